module longtask.dev/hack/kube

go 1.26

require k8s.io/kubernetes v1.37.2
