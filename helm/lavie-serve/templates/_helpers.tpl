{{/* Chart name, truncated to 63 characters. */}}
{{- define "lavie.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified release name; leaves room for "-runner-interpolation" suffixes. */}}
{{- define "lavie.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lavie.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels shared by every component: pass (dict "ctx" $ "component" "x"). */}}
{{- define "lavie.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lavie.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "lavie.labels" -}}
helm.sh/chart: {{ include "lavie.chart" .ctx }}
{{ include "lavie.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: lavie-serve
{{- end -}}

{{- define "lavie.coordinatorName" -}}
{{- printf "%s-coordinator" (include "lavie.fullname" .) -}}
{{- end -}}

{{/* Labels of a stage's runner pods and Services, as the coordinator's EndpointSlice discovery and
autoscaler select them (app.kubernetes.io/component=runner, lavie.dev/stage=<stage>): pass (dict "ctx" $ "stage" "base"). */}}
{{- define "lavie.runnerSelectorLabels" -}}
{{ include "lavie.selectorLabels" (dict "ctx" .ctx "component" "runner") }}
lavie.dev/stage: {{ .stage }}
{{- end -}}

{{- define "lavie.runnerLabels" -}}
{{ include "lavie.labels" (dict "ctx" .ctx "component" "runner") }}
lavie.dev/stage: {{ .stage }}
{{- end -}}

{{/* Runner Deployment/Service name: pass (dict "ctx" $ "stage" "base"). */}}
{{- define "lavie.runnerName" -}}
{{- printf "%s-runner-%s" (include "lavie.fullname" .ctx) .stage -}}
{{- end -}}

{{- define "lavie.natsName" -}}
{{- printf "%s-nats" (include "lavie.fullname" .) -}}
{{- end -}}

{{- define "lavie.runnerServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- printf "%s-runner" (include "lavie.fullname" .) -}}
{{- else -}}
default
{{- end -}}
{{- end -}}

{{- define "lavie.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lavie.coordinatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The stages, in cascade order. */}}
{{- define "lavie.stages" -}}
base interpolation vsr
{{- end -}}

{{- define "lavie.natsUrl" -}}
{{- if .Values.nats.url -}}
{{- .Values.nats.url -}}
{{- else -}}
{{- printf "nats://%s.%s.svc:4222" (include "lavie.natsName" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "lavie.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* True (non-empty) when the built-in autoscaler is active. */}}
{{- define "lavie.autoscalerOn" -}}
{{- if and .Values.autoscaler.enabled (not .Values.keda.enabled) -}}true{{- end -}}
{{- end -}}

{{- define "lavie.modelDir" -}}
{{- $sub := .Values.models.subdir -}}
{{- if and (not $sub) .Values.models.build.enabled -}}{{- $sub = .Values.models.build.preset -}}{{- end -}}
{{- if $sub -}}{{- printf "/models/%s" $sub -}}{{- else -}}/models{{- end -}}
{{- end -}}

{{/* Pod-level security context. */}}
{{- define "lavie.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
{{- with .Values.podSecurity.seccompProfile }}
seccompProfile:
  type: {{ . }}
{{- end }}
{{- end -}}

{{/* Container-level security context: non-root, read-only root filesystem, no capabilities. */}}
{{- define "lavie.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The model volume (name "models"). */}}
{{- define "lavie.modelVolume" -}}
{{- $s := .Values.models.storage -}}
- name: models
{{- if eq $s.type "emptyDir" }}
  emptyDir:
    {{- with $s.emptyDir.sizeLimit }}
    sizeLimit: {{ . }}
    {{- else }} {}
    {{- end }}
{{- else if eq $s.type "hostPath" }}
  hostPath:
    path: {{ required "models.storage.hostPath.path is required when models.storage.type=hostPath" $s.hostPath.path }}
    {{- with $s.hostPath.type }}
    type: {{ . }}
    {{- end }}
{{- else if eq $s.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ include "lavie.fullname" . }}-models
{{- else }}
  persistentVolumeClaim:
    claimName: {{ required "models.storage.existingClaim is required when models.storage.type=existingClaim" $s.existingClaim }}
{{- end }}
{{- end -}}

{{/* initContainer building a demo preset into the model volume (pods sharing a volume race safely). */}}
{{- define "lavie.modelBuildInit" -}}
{{- if .Values.models.build.enabled }}
- name: build-models
  image: {{ include "lavie.image" (dict "ctx" . "image" .Values.image.coordinator) }}
  imagePullPolicy: {{ .Values.image.coordinator.pullPolicy }}
  command: ["/bin/sh", "-ec"]
  args:
    - |
      dir="{{ include "lavie.modelDir" . }}"
      if [ -f "$dir/manifest.json" ]; then echo "models present in $dir"; exit 0; fi
      tmp="/models/.build-${HOSTNAME}"
      rm -rf "$tmp"
      node /app/bin/lavie.js models build --preset "$LAVIE_PRESET" --seed "$LAVIE_MODEL_SEED" --out "$tmp"
      if mv -T "$tmp" "$dir" 2>/dev/null; then echo "built $LAVIE_PRESET into $dir"; exit 0; fi
      rm -rf "$tmp"
      test -f "$dir/manifest.json"
  env:
    - name: LAVIE_PRESET
      value: {{ .Values.models.build.preset | quote }}
    - name: LAVIE_MODEL_SEED
      value: {{ .Values.models.build.seed | quote }}
  securityContext:
    {{- include "lavie.containerSecurityContext" . | nindent 4 }}
  {{- with .Values.models.build.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: models
      mountPath: /models
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end -}}

{{/* Environment shared by the coordinator and the runners: NATS, models, metrics, OTEL. */}}
{{- define "lavie.commonEnv" -}}
- name: LAVIE_NATS_URL
  value: {{ include "lavie.natsUrl" . | quote }}
- name: LAVIE_MODEL_DIR
  value: {{ include "lavie.modelDir" . | quote }}
- name: LAVIE_METRICS_PORT
  value: {{ ternary .Values.metrics.port 0 .Values.metrics.enabled | quote }}
{{- if .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otel.endpoint | quote }}
{{- range $k, $val := .Values.otel.env }}
- name: {{ $k }}
  value: {{ $val | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Probes for a gRPC server on .port. */}}
{{- define "lavie.probes" -}}
{{- $p := .ctx.Values.probes -}}
{{- $check := "" -}}
{{- if eq $p.mode "grpc" -}}
{{- $check = printf "grpc:\n  port: %d" (int .port) -}}
{{- else -}}
{{- $check = printf "tcpSocket:\n  port: %d" (int .port) -}}
{{- end -}}
startupProbe:
  {{- $check | nindent 2 }}
  periodSeconds: 10
  failureThreshold: {{ $p.startupFailureThreshold }}
readinessProbe:
  {{- $check | nindent 2 }}
  periodSeconds: {{ $p.readinessPeriodSeconds }}
  failureThreshold: 3
livenessProbe:
  {{- $check | nindent 2 }}
  periodSeconds: {{ $p.livenessPeriodSeconds }}
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* Prometheus scrape annotations. */}}
{{- define "lavie.metricsAnnotations" -}}
{{- if .Values.metrics.enabled }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: {{ .Values.metrics.path | quote }}
{{- end }}
{{- end -}}
