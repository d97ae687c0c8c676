{{/* Names and labels. */}}
{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sluice.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote }}
{{- end -}}

{{/* The worker's consumer group; the high-priority topic is read by "<group>.high". */}}
{{- define "sluice.workerGroup" -}}
{{ include "sluice.fullname" . }}-workers
{{- end -}}

{{/* KEDA's target lag per worker on the normal topic: by default one worker's pipeline (jobs
running, maxInFlight or 2 x maxNumSeqs, plus as many buffered). */}}
{{- define "sluice.lagThreshold" -}}
{{- $inFlight := .Values.worker.maxInFlight | default (mul 2 .Values.worker.maxNumSeqs) -}}
{{- .Values.autoscaling.lagThreshold | default (mul 2 $inFlight) -}}
{{- end -}}

{{/* Environment every Sluice container shares: the cluster, its credentials, the topics. */}}
{{- define "sluice.kafkaEnv" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: SLUICE_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- with .Values.kafka.sasl.mechanism }}
- name: SLUICE_SASL_MECHANISM
  value: {{ . | quote }}
- name: SLUICE_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $.Values.kafka.sasl.existingSecret | quote }}, key: {{ $.Values.kafka.sasl.usernameKey | quote }}}
- name: SLUICE_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $.Values.kafka.sasl.existingSecret | quote }}, key: {{ $.Values.kafka.sasl.passwordKey | quote }}}
{{- end }}
{{- if .Values.kafka.tls.caSecret }}
- name: SLUICE_SSL_CA_LOCATION
  value: /etc/sluice/kafka-ca/ca.crt
{{- end }}
- name: SLUICE_JOBS_TOPIC
  value: {{ .Values.kafka.topics.jobs | quote }}
- name: SLUICE_HIGH_TOPIC
  value: {{ .Values.kafka.topics.high | quote }}
- name: SLUICE_RESULTS_TOPIC
  value: {{ .Values.kafka.topics.results | quote }}
- name: SLUICE_DLQ_TOPIC
  value: {{ .Values.kafka.topics.dlq | quote }}
- name: SLUICE_DELIVERIES_TOPIC
  value: {{ .Values.kafka.topics.deliveries | quote }}
- name: SLUICE_JOBS_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: SLUICE_RESULTS_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: SLUICE_REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | quote }}
- name: SLUICE_WEBHOOK_ALLOW_HTTP
  value: {{ .Values.webhooks.allowHttp | quote }}
- name: SLUICE_WEBHOOK_ALLOWLIST
  value: {{ join "," .Values.webhooks.allowlist | quote }}
- name: SLUICE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* The CA volume and mount, when the brokers' CA is given. */}}
{{- define "sluice.caVolume" -}}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret: {secretName: {{ .Values.kafka.tls.caSecret | quote }}}
{{- end }}
{{- end -}}
{{- define "sluice.caMount" -}}
{{- if .Values.kafka.tls.caSecret }}
- {name: kafka-ca, mountPath: /etc/sluice/kafka-ca, readOnly: true}
{{- end }}
{{- end -}}

{{- define "sluice.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
securityContext: {{ toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Combinations values.schema.json cannot express; each fails with what to change. */}}
{{- define "sluice.validate" -}}
{{- $a := .Values.autoscaling -}}
{{- if and $a.enabled (lt (int $a.maxReplicas) (int $a.minReplicas)) -}}
{{- fail (printf "autoscaling.maxReplicas (%v) is below autoscaling.minReplicas (%v)" $a.maxReplicas $a.minReplicas) -}}
{{- end -}}
{{- if and $a.enabled (gt (int $a.maxReplicas) (int .Values.kafka.partitions)) (not $a.allowIdleConsumers) -}}
{{- fail (printf "autoscaling.maxReplicas (%v) is above kafka.partitions (%v): workers beyond the partition count sit idle; raise kafka.partitions, lower maxReplicas, or set autoscaling.allowIdleConsumers=true" $a.maxReplicas .Values.kafka.partitions) -}}
{{- end -}}
{{- $k := .Values.kafka -}}
{{- if and (hasPrefix "SASL_" $k.securityProtocol) (not $k.sasl.mechanism) -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" $k.securityProtocol) -}}
{{- end -}}
{{- if and $k.sasl.mechanism (not (hasPrefix "SASL_" $k.securityProtocol)) -}}
{{- fail (printf "kafka.sasl.mechanism is set but kafka.securityProtocol is %s; use SASL_SSL or SASL_PLAINTEXT" $k.securityProtocol) -}}
{{- end -}}
{{- if and $k.sasl.mechanism (not $k.sasl.existingSecret) -}}
{{- fail "kafka.sasl.existingSecret must name the Secret with the SASL username and password" -}}
{{- end -}}
{{- if and (eq .Values.worker.engine "vllm") (not .Values.worker.model) -}}
{{- fail "worker.model must name the model the vllm engine serves" -}}
{{- end -}}
{{- end -}}
