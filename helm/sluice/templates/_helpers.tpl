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

{{/* The worker pools as a JSON list: one per entry of .Values.pools (each with its own jobs
topics, consumer group, Deployment, PodDisruptionBudget and ScaledObject; unset fields come from
.Values.worker and .Values.autoscaling), or the one pool of .Values.worker when the list is empty
(name "", objects and topics named as before pools existed). */}}
{{- define "sluice.pools" -}}
{{- $w := .Values.worker -}}
{{- $a := .Values.autoscaling -}}
{{- $k := .Values.kafka -}}
{{- $group := include "sluice.workerGroup" . -}}
{{- $entries := .Values.pools | default (list (dict "name" "")) -}}
{{- $pools := list -}}
{{- range $e := $entries -}}
{{- $seqs := hasKey $e "maxNumSeqs" | ternary $e.maxNumSeqs $w.maxNumSeqs -}}
{{- $inFlight := hasKey $e "maxInFlight" | ternary $e.maxInFlight $w.maxInFlight | default (mul 2 $seqs) -}}
{{- $lag := hasKey $e "lagThreshold" | ternary $e.lagThreshold $a.lagThreshold | default (mul 2 $inFlight) -}}
{{- $high := hasKey $e "highLagThreshold" | ternary $e.highLagThreshold $a.highLagThreshold | default (div $lag 2) -}}
{{- $named := not (empty $e.name) -}}
{{- $suffix := $named | ternary (printf "-%s" $e.name) "" -}}
{{- $topicSuffix := $named | ternary (printf ".%s" $e.name) "" -}}
{{- $pools = append $pools (dict
  "name" $e.name
  "suffix" $suffix
  "model" (hasKey $e "model" | ternary $e.model $w.model)
  "servedModelNames" (hasKey $e "servedModelNames" | ternary $e.servedModelNames $w.servedModelNames)
  "maxNumSeqs" $seqs
  "maxInFlight" (hasKey $e "maxInFlight" | ternary $e.maxInFlight $w.maxInFlight)
  "resources" (hasKey $e "resources" | ternary $e.resources $w.resources)
  "minReplicas" (hasKey $e "minReplicas" | ternary $e.minReplicas $a.minReplicas)
  "maxReplicas" (hasKey $e "maxReplicas" | ternary $e.maxReplicas $a.maxReplicas)
  "replicas" (hasKey $e "replicas" | ternary $e.replicas $w.replicas)
  "partitions" (hasKey $e "partitions" | ternary $e.partitions $k.partitions)
  "lagThreshold" $lag
  "highLagThreshold" $high
  "jobsTopic" (printf "%s%s" $k.topics.jobs $topicSuffix)
  "highTopic" (printf "%s%s" $k.topics.high $topicSuffix)
  "group" (printf "%s%s" $group $suffix)
) -}}
{{- end -}}
{{- toJson $pools -}}
{{- end -}}

{{/* Labels that tell one pool's workers from another's (none for the single unnamed pool, so
its Deployment's immutable selector stays as it was). */}}
{{- define "sluice.poolLabels" -}}
app.kubernetes.io/component: worker
{{- if .name }}
sluice.dev/pool: {{ .name | quote }}
{{- end }}
{{- end -}}

{{/* Environment every Sluice container shares: the cluster, its credentials, the topics. */}}
{{- define "sluice.kafkaEnv" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: SLUICE_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: SLUICE_GROUP_PROTOCOL
  value: {{ .Values.kafka.groupProtocol | quote }}
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
{{- if .Values.pools }}
{{- $routes := dict -}}
{{- $partitions := dict -}}
{{- range $p := .Values.pools }}
{{- range $name := $p.servedModelNames | default (list $p.model) }}
{{- $_ := set $routes $name $p.name }}
{{- end }}
{{- $_ := set $partitions $p.name (hasKey $p "partitions" | ternary $p.partitions $.Values.kafka.partitions) }}
{{- end }}
# Producers (the API) route each job to the pool that serves its model.
- name: SLUICE_POOLS
  value: {{ toJson $routes | quote }}
- name: SLUICE_POOL_PARTITIONS
  value: {{ toJson $partitions | quote }}
{{- end }}
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
{{- $names := list -}}
{{- range $p := include "sluice.pools" . | fromJsonArray -}}
{{- $where := not (empty $p.name) | ternary (printf "pools[%s]." $p.name) "autoscaling." -}}
{{- if and $a.enabled (lt (int $p.maxReplicas) (int $p.minReplicas)) -}}
{{- fail (printf "%smaxReplicas (%v) is below %sminReplicas (%v)" $where $p.maxReplicas $where $p.minReplicas) -}}
{{- end -}}
{{- if and $a.enabled (gt (int $p.maxReplicas) (int $p.partitions)) (not $a.allowIdleConsumers) -}}
{{- $parts := not (empty $p.name) | ternary (printf "pools[%s].partitions" $p.name) "kafka.partitions" -}}
{{- fail (printf "%smaxReplicas (%v) is above %s (%v): workers beyond the partition count sit idle; raise %s, lower maxReplicas, or set autoscaling.allowIdleConsumers=true" $where $p.maxReplicas $parts $p.partitions $parts) -}}
{{- end -}}
{{- if and (eq $.Values.worker.engine "vllm") (not $p.model) -}}
{{- fail (printf "%smodel must name the model the vllm engine serves" (not (empty $p.name) | ternary (printf "pools[%s]." $p.name) "worker.")) -}}
{{- end -}}
{{- if has $p.name $names -}}
{{- fail (printf "pools: two pools are named %q" $p.name) -}}
{{- end -}}
{{- $names = append $names $p.name -}}
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
{{- end -}}
