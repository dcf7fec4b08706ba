{{/*
Names, labels and shared snippets. Selector labels never change between releases of the
chart (a Deployment's selector is immutable); everything else may.
*/}}

{{/* The chart name, at most 63 characters (a DNS label). */}}
{{- define "longtask.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name, at most 63 characters. A release whose name already
contains the chart name is not repeated ("longtask", not "longtask-longtask").
*/}}
{{- define "longtask.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The name of one component's resources: dict "root" $ "component" "api" [ "max" 52 ].
At most `max` (default 63) characters; the fullname is shortened, never the component,
so that the names of a release's components never collide however long the release name.
*/}}
{{- define "longtask.componentName" -}}
{{- $max := int (default 63 .max) }}
{{- $room := sub $max (add1 (len .component)) | int }}
{{- if lt $room 1 }}
{{- fail (printf "the resource name suffix %q is too long" .component) }}
{{- end }}
{{- printf "%s-%s" (include "longtask.fullname" .root | trunc $room | trimSuffix "-") .component }}
{{- end }}

{{- define "longtask.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of the whole release; never change them. */}}
{{- define "longtask.selectorLabels" -}}
app.kubernetes.io/name: {{ include "longtask.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels of every resource. */}}
{{- define "longtask.labels" -}}
helm.sh/chart: {{ include "longtask.chart" . }}
{{ include "longtask.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: longtask
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: dict "root" $ "component" "api". */}}
{{- define "longtask.componentSelectorLabels" -}}
{{ include "longtask.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Standard labels of one component's resources: dict "root" $ "component" "api". */}}
{{- define "longtask.componentLabels" -}}
{{ include "longtask.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
An image reference: dict "repository" .. "tag" .. "digest" ..: `repository:tag`, and with a
digest `repository:tag@digest`, pinned by the digest (the tag is then only a label).
*/}}
{{- define "longtask.imageRef" -}}
{{- $ref := printf "%s:%s" .repository .tag }}
{{- if .digest }}
{{- $ref = printf "%s@%s" $ref .digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/* The longtask image: repository:tag (tag defaults to the appVersion), plus @digest if set. */}}
{{- define "longtask.image" -}}
{{- include "longtask.imageRef" (dict "repository" .Values.image.repository "tag" (.Values.image.tag | default .Chart.AppVersion) "digest" .Values.image.digest) }}
{{- end }}

{{/* The service account of one component: dict "root" $ "component" "api" "sa" .Values.api.serviceAccount. */}}
{{- define "longtask.serviceAccountName" -}}
{{- if .sa.create }}
{{- default (include "longtask.componentName" .) .sa.name }}
{{- else }}
{{- default "default" .sa.name }}
{{- end }}
{{- end }}

{{/*
The built-in Redis' StatefulSet and Service name. At most 52 characters: the StatefulSet
controller labels its pods with controller-revision-hash=<name>-<10 characters>.
*/}}
{{- define "longtask.redisName" -}}
{{- include "longtask.componentName" (dict "root" . "component" "redis" "max" 52) }}
{{- end }}

{{/* The Secret the chart makes for Redis: the built-in one's password and every pod's REDIS_URL. */}}
{{- define "longtask.redisSecretName" -}}
{{- include "longtask.componentName" (dict "root" . "component" "redis") }}
{{- end }}

{{/*
The external Redis URL given as a value: redis.external.url, or the older redis.url.
*/}}
{{- define "longtask.externalRedisUrl" -}}
{{- .Values.redis.external.url | default .Values.redis.url }}
{{- end }}

{{/*
The Secret and key every pod reads REDIS_URL from, as "name key": the chart's own Secret
(key `url`) for the built-in Redis (unless redis.auth.existingSecret) or an external URL
given as a value; else the user's Secret of redis.external.existingSecret (or the older
redis.existingSecret).
*/}}
{{- define "longtask.redisUrlRef" -}}
{{- $ext := .Values.redis.external.existingSecret }}
{{- $old := .Values.redis.existingSecret }}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.existingSecret }}
{{- printf "%s url" .Values.redis.auth.existingSecret }}
{{- else }}
{{- printf "%s url" (include "longtask.redisSecretName" .) }}
{{- end }}
{{- else if $ext.name }}
{{- printf "%s %s" $ext.name $ext.key }}
{{- else if $old.name }}
{{- printf "%s %s" $old.name $old.key }}
{{- else if (include "longtask.externalRedisUrl" .) }}
{{- printf "%s url" (include "longtask.redisSecretName" .) }}
{{- else }}
{{- fail "redis: set redis.external.url (or redis.external.existingSecret.name) to an external Redis, or redis.enabled=true for the built-in one" }}
{{- end }}
{{- end }}

{{/*
The Redis env of every component: REDIS_URL from a Secret (it may carry a password), and
with redis.external.sentinels the Sentinel settings (REDIS_URL then gives the password,
database and scheme; its host:port are not used).
*/}}
{{- define "longtask.redisEnv" -}}
{{- $ref := splitList " " (include "longtask.redisUrlRef" .) }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ index $ref 0 }}
      key: {{ index $ref 1 }}
{{- $ext := .Values.redis.external }}
{{- if and (not .Values.redis.enabled) $ext.sentinels }}
- name: LONGTASK_REDIS_SENTINELS
  value: {{ join "," $ext.sentinels | quote }}
- name: LONGTASK_REDIS_MASTER
  value: {{ $ext.masterName | quote }}
{{- with $ext.sentinelPassword.existingSecret }}
- name: LONGTASK_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $ext.sentinelPassword.key }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Soft anti-affinity by node for a component's replicas (dict "root" $ "component" "api"),
used when the component sets no affinity of its own.
*/}}
{{- define "longtask.spreadAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "longtask.componentSelectorLabels" . | nindent 12 }}
{{- end }}

{{/*
A PodDisruptionBudget for a component: dict "root" $ "component" "api" "pdb" .Values.api.podDisruptionBudget.
*/}}
{{- define "longtask.pdb" -}}
{{- if .pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "longtask.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "longtask.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "longtask.componentSelectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/*
checkov.io/skip annotations (dict "skips" (list "CKV_K8S_43=why" ...)); the chart README's
table "Checkov" lists every one.
*/}}
{{- define "longtask.checkovSkips" -}}
{{- range $i, $skip := .skips }}
{{- if ne (len (splitList "=" $skip)) 2 }}{{ fail (printf "a checkov skip is ID=reason, with no other '=': %s" $skip) }}{{ end }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end }}

{{/* imagePullSecrets of every pod. */}}
{{- define "longtask.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Scheduling and security of a pod: dict "root" $ "c" .Values.<component>.
Pod security comes from the component, else from the chart-wide podSecurityContext.
*/}}
{{- define "longtask.podScheduling" -}}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .c.affinity }}
affinity:
  {{- toYaml .c.affinity | nindent 2 }}
{{- else if .spread }}
affinity:
  {{- include "longtask.spreadAffinity" (dict "root" .root "component" .spread) | nindent 2 }}
{{- end }}
{{- end }}

{{/* A writable /tmp for a container whose root filesystem is read-only. */}}
{{- define "longtask.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "longtask.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Traces and logs of a component (telemetry.*): its log format, and with an OTLP endpoint its
service name in traces (nothing by default: text logs, no spans exported; the code's defaults).
Call with (dict "root" $ "component" "api").
*/}}
{{- define "longtask.telemetryEnv" -}}
{{- $t := .root.Values.telemetry -}}
{{- if ne $t.logFormat "text" }}
- name: LONGTASK_LOG_FORMAT
  value: {{ $t.logFormat | quote }}
{{- end }}
{{- with $t.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "longtask-%s" $.component | quote }}
{{- end }}
{{- with $t.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The checkov checks skipped on a workload running the longtask image, as a YAML list:
dict "root" $ [ "token" "why the pod needs its ServiceAccount token" ].
*/}}
{{- define "longtask.longtaskImageSkips" -}}
{{- $skips := list "CKV_K8S_15=IfNotPresent: a release's image is one exact tag (or digest) that never moves, so a restart needs no registry; set image.pullPolicy to Always to re-pull" "CKV_K8S_35=every component reads REDIS_URL (which may carry the Redis password) from its environment, as Celery and redis-py take a URL; the pod spec holds only the Secret reference" }}
{{- if not .root.Values.image.digest }}
{{- $skips = append $skips "CKV_K8S_43=pinned by an exact tag (the chart's appVersion) by default; set image.digest to pin it by digest (chart README: Images)" }}
{{- end }}
{{- with .token }}
{{- $skips = append $skips (printf "CKV_K8S_38=%s" .) }}
{{- end }}
{{- toYaml $skips }}
{{- end }}
