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
{{- /* Kubelet gRPC probes cannot speak TLS: with tls.enabled they are tcpSocket probes. */ -}}
{{- if and (eq $p.mode "grpc") (not .ctx.Values.tls.enabled) -}}
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

{{/* ---------------------------------------------------------------------------------------------
Security: NATS users and permissions, client API auth, TLS, the runner token.
--------------------------------------------------------------------------------------------- */}}

{{/* True (non-empty) when the bundled NATS runs with users (nats.auth.enabled). */}}
{{- define "lavie.natsAuthOn" -}}
{{- if and (not .Values.nats.url) .Values.nats.auth.enabled -}}true{{- end -}}
{{- end -}}

{{- define "lavie.natsAuthSecretName" -}}
{{- default (printf "%s-nats-auth" (include "lavie.fullname" .)) .Values.nats.auth.existingSecret -}}
{{- end -}}

{{/* NATS user of a role: pass (dict "role" "coordinator"). */}}
{{- define "lavie.natsUser" -}}
{{- printf "lavie-%s" .role -}}
{{- end -}}

{{/* nats-server variable holding a role's password: LAVIE_NATS_PASSWORD_<ROLE>. */}}
{{- define "lavie.natsPasswordVar" -}}
{{- printf "LAVIE_NATS_PASSWORD_%s" (upper .role) -}}
{{- end -}}

{{/*
Publish/subscribe allow lists of a role, as JSON {"publish": [...], "subscribe": [...]}. The same
lists as rolePermissions() in transport/nats/permissions.ts (test/helm/chart.test.ts compares them):
pass (dict "role" "runner" "jobs" "lavie-jobs" "runners" "lavie-runners" "tensors" "lavie-tensors"
"cfg" "LAVIE_CFG" "inbox" "_INBOX_runner").
*/}}
{{- define "lavie.natsPermissions" -}}
{{- $kvJobs := printf "KV_%s" .jobs -}}
{{- $kvRunners := printf "KV_%s" .runners -}}
{{- $objTensors := printf "OBJ_%s" .tensors -}}
{{- $read := dict -}}
{{- range $s := list $kvJobs $kvRunners $objTensors .cfg -}}
{{- $_ := set $read $s (list (printf "$JS.API.STREAM.INFO.%s" $s) (printf "$JS.API.STREAM.MSG.GET.%s" $s) (printf "$JS.API.DIRECT.GET.%s" $s) (printf "$JS.API.DIRECT.GET.%s.>" $s) (printf "$JS.API.CONSUMER.CREATE.%s" $s) (printf "$JS.API.CONSUMER.CREATE.%s.>" $s) (printf "$JS.API.CONSUMER.INFO.%s.>" $s) (printf "$JS.API.CONSUMER.DELETE.%s.>" $s) (printf "$JS.FC.%s.>" $s)) -}}
{{- end -}}
{{- $pub := list -}}
{{- if eq .role "admin" -}}
{{- $pub = list ">" -}}
{{- else if eq .role "coordinator" -}}
{{- $pub = list "$JS.API.INFO" (printf "$JS.API.STREAM.CREATE.%s" $kvJobs) -}}
{{- $pub = concat $pub (index $read $kvJobs) (list (printf "$KV.%s.>" .jobs) (printf "$JS.API.STREAM.CREATE.%s" $kvRunners)) -}}
{{- $pub = concat $pub (index $read $kvRunners) (list (printf "$JS.API.STREAM.CREATE.%s" $objTensors) (printf "$JS.API.STREAM.PURGE.%s" $objTensors)) -}}
{{- $pub = concat $pub (index $read $objTensors) (list (printf "$O.%s.>" .tensors)) -}}
{{- else if eq .role "runner" -}}
{{- $pub = list "$JS.API.INFO" (printf "$JS.API.STREAM.CREATE.%s" $kvRunners) (printf "$JS.API.STREAM.INFO.%s" $kvRunners) (printf "$KV.%s.>" .runners) (printf "$JS.API.STREAM.CREATE.%s" $objTensors) (printf "$JS.API.STREAM.PURGE.%s" $objTensors) -}}
{{- $pub = concat $pub (index $read $objTensors) (list (printf "$O.%s.>" .tensors) (printf "$JS.API.STREAM.CREATE.%s" .cfg) (printf "$JS.API.STREAM.PURGE.%s" .cfg)) -}}
{{- $pub = concat $pub (index $read .cfg) (list (printf "$JS.API.CONSUMER.MSG.NEXT.%s.>" .cfg) "lavie.cfg.>") -}}
{{- else -}}
{{- fail (printf "lavie.natsPermissions: unknown role %q" .role) -}}
{{- end -}}
{{- $sub := ternary (list ">") (list (printf "%s.>" .inbox)) (eq .role "admin") -}}
{{- dict "publish" $pub "subscribe" $sub | toJson -}}
{{- end -}}

{{/* A list of strings in nats-server syntax: ["a", "b"]. */}}
{{- define "lavie.natsList" -}}
[{{ range $i, $s := . }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}]
{{- end -}}

{{/* The bundled NATS's authorization block (the format of authorizationBlock() in permissions.ts). */}}
{{- define "lavie.natsAuthorization" -}}
{{- $roles := list "coordinator" "runner" -}}
{{- if .Values.nats.auth.admin.enabled }}{{ $roles = append $roles "admin" }}{{ end -}}
authorization {
  users = [
{{- range $role := $roles }}
{{- $inbox := ternary "_INBOX" (printf "_INBOX_%s" $role) (eq $role "admin") }}
{{- $p := include "lavie.natsPermissions" (dict "role" $role "jobs" "lavie-jobs" "runners" $.Values.runners.runnersBucket "tensors" $.Values.runners.tensorBucket "cfg" "LAVIE_CFG" "inbox" $inbox) | fromJson }}
    { user: {{ include "lavie.natsUser" (dict "role" $role) | quote }}, password: ${{ include "lavie.natsPasswordVar" (dict "role" $role) }}, permissions: {
        publish: { allow: {{ include "lavie.natsList" $p.publish }} }
        subscribe: { allow: {{ include "lavie.natsList" $p.subscribe }} }
    } }
{{- end }}
  ]
}
{{- end -}}

{{/* True (non-empty) when the runner token is used (runnerAuth.enabled and TLS off). */}}
{{- define "lavie.runnerTokenOn" -}}
{{- if and .Values.runnerAuth.enabled (not .Values.tls.enabled) -}}true{{- end -}}
{{- end -}}

{{- define "lavie.runnerTokenSecretName" -}}
{{- default (printf "%s-runner-token" (include "lavie.fullname" .)) .Values.runnerAuth.existingSecret -}}
{{- end -}}

{{/* TLS Secret of a role: pass (dict "ctx" $ "role" "coordinator"|"runner"). */}}
{{- define "lavie.tlsSecretName" -}}
{{- $v := index .ctx.Values.tls .role -}}
{{- default (printf "%s-%s-tls" (include "lavie.fullname" .ctx) .role) $v.existingSecret -}}
{{- end -}}

{{/* A value kept across upgrades: the key of an existing Secret, else a new random string (base64).
Pass (dict "ctx" $ "secret" name "key" key "length" 32). */}}
{{- define "lavie.keptRandom" -}}
{{- $live := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $live $live.data (hasKey $live.data .key) -}}
{{- index $live.data .key -}}
{{- else -}}
{{- printf "L%s" (randAlphaNum (int .length)) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* Checks of security values the schema cannot express; fails naming the values. */}}
{{- define "lavie.validateSecurity" -}}
{{- $t := .Values.tls -}}
{{- if $t.enabled -}}
{{- if and (not $t.certManager.issuerRef) (or (not $t.coordinator.existingSecret) (not $t.runner.existingSecret)) -}}
{{- fail "tls.enabled needs certificates: set tls.coordinator.existingSecret and tls.runner.existingSecret (kubernetes.io/tls Secrets with tls.crt, tls.key, ca.crt), or tls.certManager.issuerRef for cert-manager" -}}
{{- end -}}
{{- if and $t.certManager.issuerRef (not $t.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.issuerRef.name is required when tls.certManager.issuerRef is set" -}}
{{- end -}}
{{- else if $t.clientApi.requireClientCert -}}
{{- fail "tls.clientApi.requireClientCert needs tls.enabled=true" -}}
{{- end -}}
{{- $j := .Values.auth.jwt -}}
{{- if and $j.existingSecret (not $j.secretKey) (not $j.publicKeyKey) -}}
{{- fail "auth.jwt.existingSecret needs auth.jwt.secretKey (HS256 secret) or auth.jwt.publicKeyKey (PEM public keys)" -}}
{{- end -}}
{{- if and (not $j.existingSecret) (or $j.secretKey $j.publicKeyKey $j.issuer $j.audience $j.tenantClaim) -}}
{{- fail "auth.jwt.secretKey/publicKeyKey/issuer/audience/tenantClaim need auth.jwt.existingSecret (the Secret with the JWT key)" -}}
{{- end -}}
{{- if and .Values.nats.url .Values.nats.auth.existingSecret -}}
{{- fail "nats.auth.existingSecret is for the bundled NATS; with nats.url use nats.external.credsSecret" -}}
{{- end -}}
{{- end -}}

{{/* Secret volume of selected keys, read-only files: pass (dict "name" vol "secret" s "items" (list (dict "key" k "path" p))). */}}
{{- define "lavie.secretVolume" -}}
- name: {{ .name }}
  secret:
    secretName: {{ .secret }}
    # 0400; with podSecurity.fsGroup the kubelet makes the files 0440 root:<fsGroup>
    defaultMode: 256
    {{- with .items }}
    items:
      {{- range . }}
      - key: {{ .key | quote }}
        path: {{ .path | quote }}
      {{- end }}
    {{- end }}
{{- end -}}

{{/*
Security settings of a process: pass (dict "ctx" $ "role" "coordinator"|"runner" "part" "env"|"mounts"|"volumes").
Every secret is a file under /etc/lavie/<name>/ from a read-only Secret volume.
*/}}
{{- define "lavie.security" -}}
{{- $ := .ctx -}}
{{- $role := .role -}}
{{- $part := .part -}}
{{- $v := $.Values -}}
{{- $items := list -}}
{{- /* NATS */ -}}
{{- if include "lavie.natsAuthOn" $ -}}
{{- $items = append $items (dict "vol" "nats-auth" "dir" "/etc/lavie/nats-auth" "secret" (include "lavie.natsAuthSecretName" $) "keys" (list (dict "key" $role "path" "password")) "env" (dict "LAVIE_NATS_USER" (dict "value" (include "lavie.natsUser" (dict "role" $role))) "LAVIE_NATS_PASSWORD_FILE" (dict "file" "password") "LAVIE_NATS_INBOX_PREFIX" (dict "value" (printf "_INBOX_%s" $role))) ) -}}
{{- else if $v.nats.url -}}
{{- $x := $v.nats.external -}}
{{- if $x.credsSecret -}}
{{- $items = append $items (dict "vol" "nats-creds" "dir" "/etc/lavie/nats-creds" "secret" $x.credsSecret "keys" (list (dict "key" (ternary $x.coordinatorKey $x.runnerKey (eq $role "coordinator")) "path" "nats.creds")) "env" (dict "LAVIE_NATS_CREDS_FILE" (dict "file" "nats.creds"))) -}}
{{- end -}}
{{- if $x.tls.caSecret -}}
{{- $items = append $items (dict "vol" "nats-ca" "dir" "/etc/lavie/nats-ca" "secret" $x.tls.caSecret "keys" (list (dict "key" $x.tls.caKey "path" "ca.crt")) "env" (dict "LAVIE_NATS_CA_FILE" (dict "file" "ca.crt"))) -}}
{{- end -}}
{{- if $x.tls.clientCertSecret -}}
{{- $items = append $items (dict "vol" "nats-client-tls" "dir" "/etc/lavie/nats-client-tls" "secret" $x.tls.clientCertSecret "keys" (list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key")) "env" (dict "LAVIE_NATS_TLS_CERT_FILE" (dict "file" "tls.crt") "LAVIE_NATS_TLS_KEY_FILE" (dict "file" "tls.key"))) -}}
{{- end -}}
{{- $inbox := index $x.inboxPrefix $role -}}
{{- if $inbox -}}
{{- $items = append $items (dict "env" (dict "LAVIE_NATS_INBOX_PREFIX" (dict "value" $inbox))) -}}
{{- end -}}
{{- end -}}
{{- /* Client API authentication (coordinator) */ -}}
{{- if eq $role "coordinator" -}}
{{- with $v.auth.apiKeys.existingSecret -}}
{{- $items = append $items (dict "vol" "api-keys" "dir" "/etc/lavie/api-keys" "secret" . "keys" (list (dict "key" $v.auth.apiKeys.key "path" "api-keys")) "env" (dict "LAVIE_API_KEYS_FILE" (dict "file" "api-keys"))) -}}
{{- end -}}
{{- $j := $v.auth.jwt -}}
{{- if $j.existingSecret -}}
{{- $keys := list -}}
{{- $env := dict -}}
{{- if $j.secretKey -}}
{{- $keys = append $keys (dict "key" $j.secretKey "path" "jwt-secret") -}}
{{- $_ := set $env "LAVIE_JWT_SECRET_FILE" (dict "file" "jwt-secret") -}}
{{- end -}}
{{- if $j.publicKeyKey -}}
{{- $keys = append $keys (dict "key" $j.publicKeyKey "path" "jwt-public-keys.pem") -}}
{{- $_ := set $env "LAVIE_JWT_PUBLIC_KEY_FILE" (dict "file" "jwt-public-keys.pem") -}}
{{- end -}}
{{- with $j.issuer }}{{ $_ := set $env "LAVIE_JWT_ISSUER" (dict "value" .) }}{{ end -}}
{{- with $j.audience }}{{ $_ := set $env "LAVIE_JWT_AUDIENCE" (dict "value" .) }}{{ end -}}
{{- with $j.tenantClaim }}{{ $_ := set $env "LAVIE_JWT_TENANT_CLAIM" (dict "value" .) }}{{ end -}}
{{- $items = append $items (dict "vol" "jwt" "dir" "/etc/lavie/jwt" "secret" $j.existingSecret "keys" $keys "env" $env) -}}
{{- end -}}
{{- end -}}
{{- /* TLS */ -}}
{{- if $v.tls.enabled -}}
{{- $keys := list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key") (dict "key" "ca.crt" "path" "ca.crt") -}}
{{- $env := dict "LAVIE_TLS_CERT_FILE" (dict "file" "tls.crt") "LAVIE_TLS_KEY_FILE" (dict "file" "tls.key") -}}
{{- if eq $role "coordinator" -}}
{{- $_ := set $env "LAVIE_RUNNER_CA_FILE" (dict "file" "ca.crt") -}}
{{- $_ := set $env "LAVIE_RUNNER_TLS_SERVER_NAME" (dict "value" $v.tls.runner.serverName) -}}
{{- if $v.tls.clientApi.requireClientCert -}}
{{- $_ := set $env "LAVIE_TLS_CLIENT_CA_FILE" (dict "file" "ca.crt") -}}
{{- end -}}
{{- else -}}
{{- $_ := set $env "LAVIE_TLS_CLIENT_CA_FILE" (dict "file" "ca.crt") -}}
{{- $_ := set $env "LAVIE_RUNNER_ALLOWED_CLIENTS" (dict "value" (join "," $v.tls.runner.allowedClients)) -}}
{{- end -}}
{{- $items = append $items (dict "vol" "tls" "dir" "/etc/lavie/tls" "secret" (include "lavie.tlsSecretName" (dict "ctx" $ "role" $role)) "keys" $keys "env" $env) -}}
{{- end -}}
{{- /* Runner token (TLS off) */ -}}
{{- if include "lavie.runnerTokenOn" $ -}}
{{- $items = append $items (dict "vol" "runner-token" "dir" "/etc/lavie/runner-token" "secret" (include "lavie.runnerTokenSecretName" $) "keys" (list (dict "key" $v.runnerAuth.key "path" "token")) "env" (dict "LAVIE_RUNNER_TOKEN_FILE" (dict "file" "token"))) -}}
{{- end -}}
{{- /* Output */ -}}
{{- range $it := $items }}
{{- if eq $part "env" }}
{{- range $name := keys $it.env | sortAlpha }}
{{- $e := index $it.env $name }}
- name: {{ $name }}
  value: {{ (ternary (printf "%s/%s" $it.dir $e.file) $e.value (hasKey $e "file")) | quote }}
{{- end }}
{{- else if and (eq $part "mounts") $it.vol }}
- name: {{ $it.vol }}
  mountPath: {{ $it.dir }}
  readOnly: true
{{- else if and (eq $part "volumes") $it.vol }}
{{ include "lavie.secretVolume" (dict "name" $it.vol "secret" $it.secret "items" $it.keys) }}
{{- end }}
{{- end }}
{{- end -}}
