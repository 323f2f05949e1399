{{- define "common.labels" -}}
app: {{ .name }}
chart: {{ .ctx.Chart.Name }}-{{ .ctx.Chart.Version | replace "+" "_" }}
release: {{ .ctx.Release.Name }}
{{- end -}}
