{{- define "common.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .ctx.Release.Name }}
  labels:
    app: {{ .ctx.Release.Name }}
    app.kubernetes.io/name: {{ .ctx.Chart.Name }}
spec:
  replicas: {{ .ctx.Values.replicas }}
  selector:
    matchLabels:
      app: {{ .ctx.Release.Name }}
  template:
    metadata:
      labels:
        app: {{ .ctx.Release.Name }}
    spec:
      containers:
      - name: {{ .ctx.Chart.Name }}
        image: {{ .ctx.Values.image }}
        ports:
        - containerPort: {{ .port }}
        env:
        {{- range $k, $v := .env }}
        - name: {{ $k }}
          value: {{ $v | quote }}
        {{- end }}
{{- end -}}

{{- define "common.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .ctx.Release.Name }}
  labels:
    app: {{ .ctx.Release.Name }}
spec:
  selector:
    app: {{ .ctx.Release.Name }}
  ports:
  - port: {{ .port }}
{{- end -}}
