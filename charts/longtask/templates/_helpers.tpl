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

{{/* The longtask image: repository:tag (tag defaults to the appVersion), plus @digest if set. */}}
{{- define "longtask.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
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

{{/*
The REDIS_URL env entry every component gets: the built-in Redis' Service, an external
URL (redis.url), or a key of an existing Secret (redis.existingSecret) when the URL
carries a password.
*/}}
{{- define "longtask.redisUrlEnv" -}}
- name: REDIS_URL
{{- if .Values.redis.enabled }}
  value: {{ printf "redis://%s.%s.svc:%d/0" (include "longtask.redisName" .) .Release.Namespace (int .Values.redis.service.port) | quote }}
{{- else if .Values.redis.existingSecret.name }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret.name }}
      key: {{ .Values.redis.existingSecret.key }}
{{- else if .Values.redis.url }}
  value: {{ .Values.redis.url | quote }}
{{- else }}
{{- fail "redis: set redis.url (or redis.existingSecret.name) to an external Redis, or redis.enabled=true for the built-in one" }}
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
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
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
