{{/* Names and labels shared by every object of the release. */}}

{{- define "ats.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ats.fullname" -}}
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

{{- define "ats.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ats.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ats.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ats.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: "worker" or "api". */}}
{{- define "ats.componentSelectorLabels" -}}
{{ include "ats.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ats.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ats.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ats.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Secret that holds ATS_REDIS_URL and ATS_API_TOKENS: the chart's own, or an existing one. */}}
{{- define "ats.secretName" -}}
{{- default (printf "%s-secret" (include "ats.fullname" .)) .Values.secret.existingSecret }}
{{- end }}

{{/* Where ATS_CHANNELS_FILE points when `channels` is given (mounted from the ConfigMap). */}}
{{- define "ats.channelsPath" -}}
/etc/ats/channels/channels.json
{{- end }}

{{/*
The environment both processes share: every ATS_* variable from the ConfigMap and the Secret,
then extraEnv (Kafka TLS/SASL passthrough and anything else), which wins on a clash.
*/}}
{{- define "ats.envFrom" -}}
- configMapRef:
    name: {{ include "ats.fullname" . }}-config
- secretRef:
    name: {{ include "ats.secretName" . }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "ats.podAnnotations" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secret.existingSecret }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The guard every template runs: values that cannot work stop the install with a reason. */}}
{{- define "ats.validate" -}}
{{- $partitions := int .Values.config.partitions }}
{{- if gt (int .Values.worker.replicas) $partitions }}
{{- fail (printf "worker.replicas (%d) must not exceed config.partitions (%d): a worker beyond the partition count owns nothing" (int .Values.worker.replicas) $partitions) }}
{{- end }}
{{- if not .Values.config.broker_url }}
{{- fail "config.broker_url is required: kafka://host:port[;host:port] of your Kafka" }}
{{- end }}
{{- if and (not .Values.secret.existingSecret) (not .Values.secret.redis_url) }}
{{- fail "secret.redis_url (or secret.existingSecret holding ATS_REDIS_URL) is required" }}
{{- end }}
{{- end }}

{{/* Where a component's pods may run: its nodeSelector, affinity, tolerations, topology spread. */}}
{{- define "ats.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
