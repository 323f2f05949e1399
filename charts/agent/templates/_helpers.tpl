{{- define "tandem.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tandem.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "tandem.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "tandem.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "tandem.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tandem.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tandem.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tandem.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tandem.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tandem.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespaces the agent deploys into (one Role and RoleBinding in each):
rbac.namespaces, else tenancy.allowedNamespaces, else the release namespace. As a
JSON list; read it with (include "tandem.namespaces" . | fromJsonArray). */}}
{{- define "tandem.namespaces" -}}
{{- $allowed := .Values.tenancy.allowedNamespaces }}
{{- $nss := .Values.rbac.namespaces | default $allowed | default (list .Release.Namespace) }}
{{- if $allowed }}
{{- range $nss }}
{{- if not (has . $allowed) }}
{{- fail (printf "rbac.namespaces lists %q, which tenancy.allowedNamespaces does not: the agent would hold rights where it may not deploy" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- $nss | uniq | toJson }}
{{- end }}

{{/* Name of the chart's cluster-scoped objects: with the release namespace, so
two releases of the same name in different namespaces do not share them. */}}
{{- define "tandem.clusterName" -}}
{{- printf "%s-%s" (include "tandem.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Rules for the objects a bundle contains, except Secrets and
ServiceAccounts: in every managed namespace, or cluster-wide with rbac.scope cluster. */}}
{{- define "tandem.rules" -}}
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["get", "update", "patch"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  # deletecollection: each check run deletes the check's earlier Jobs.
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses", "networkpolicies"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
{{- if .Values.events.enabled }}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Secrets and ServiceAccounts: only ever in the managed namespaces (a Role),
never cluster-wide. Either would let the holder act as any ServiceAccount of
the namespaces it holds them in (token Secrets). */}}
{{- define "tandem.sensitiveRules" -}}
- apiGroups: [""]
  resources: ["secrets", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- end }}

{{/* GOMEMLIMIT: goMemLimit.value, else goMemLimit.percentOfLimit percent of
resources.limits.memory in bytes; empty without a memory limit. A Kubernetes
quantity (512Mi, 1G, 536870912) is parsed here; others (1.5Gi, 5e8) need
goMemLimit.value. */}}
{{- define "tandem.goMemLimit" -}}
{{- $v := .Values.goMemLimit }}
{{- if $v.value }}
{{- $v.value }}
{{- else if and $v.percentOfLimit .Values.resources.limits .Values.resources.limits.memory }}
{{- $q := toString .Values.resources.limits.memory }}
{{- if not (regexMatch "^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$" $q) }}
{{- fail (printf "resources.limits.memory %q: the chart computes GOMEMLIMIT from integer quantities (512Mi, 2G); set goMemLimit.value" $q) }}
{{- end }}
{{- $n := regexFind "^[0-9]+" $q | int64 }}
{{- $mult := get (dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776) (trimPrefix (regexFind "^[0-9]+" $q) $q) }}
{{- $workers := mul .Values.render.workers .Values.render.workerMemoryMiB 1048576 }}
{{- div (mul (sub (mul $n $mult) $workers) $v.percentOfLimit) 100 }}
{{- end }}
{{- end }}

{{/* Milliseconds of a Go duration (30s, 1m30s, 500ms). */}}
{{- define "tandem.durationMs" -}}
{{- $ms := 0 }}
{{- range regexFindAll "[0-9]+(ns|us|ms|s|m|h)" . -1 }}
{{- $n := regexFind "^[0-9]+" . | int64 }}
{{- $ns := get (dict "ns" 1 "us" 1000 "ms" 1000000 "s" 1000000000 "m" 60000000000 "h" 3600000000000) (trimPrefix (regexFind "^[0-9]+" .) .) }}
{{- $ms = add $ms (div (mul $n $ns) 1000000) }}
{{- end }}
{{- $ms }}
{{- end }}

{{/* The tenancy file of tenancy.rules (fleet.TenancyFile). */}}
{{- define "tandem.tenancyFile" -}}
apiVersion: tandem.dev/v1alpha1
kind: Tenancy
rules:
{{ toYaml .Values.tenancy.rules }}
{{- end }}
