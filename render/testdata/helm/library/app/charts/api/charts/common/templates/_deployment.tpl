{{- define "common.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  labels: {{- include "common.labels" . | nindent 4 }}
spec:
  replicas: {{ .ctx.Values.replicas }}
  selector:
    matchLabels:
      app: {{ .name }}
  template:
    metadata:
      labels:
        app: {{ .name }}
    spec:
      containers:
      - name: {{ .name }}
        image: {{ .ctx.Values.image }}
        env:
        {{- range $k, $v := .ctx.Values.extraEnv }}
        - name: {{ $k }}
          value: {{ $v | quote }}
        {{- end }}
{{- end -}}
