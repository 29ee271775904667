{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "dsv3.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; role suffixes ("-prefill-headless") must still fit in 63. */}}
{{- define "dsv3.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dsv3.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "dsv3.labels" -}}
helm.sh/chart: {{ include "dsv3.chart" . }}
app.kubernetes.io/name: {{ include "dsv3.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dsv3
{{- end }}

{{/* Selector labels of one role: (dict "root" $ "role" "prefill"). */}}
{{- define "dsv3.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dsv3.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "dsv3.roleLabels" -}}
{{ include "dsv3.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "dsv3.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dsv3.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dsv3.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The headless Service of a role, and the name:port the router resolves. */}}
{{- define "dsv3.headlessName" -}}
{{- printf "%s-%s-headless" (include "dsv3.fullname" .root) .role }}
{{- end }}
{{- define "dsv3.headlessAddress" -}}
{{- printf "%s.%s.svc.%s:%d" (include "dsv3.headlessName" .) .root.Release.Namespace .root.Values.clusterDomain (int .root.Values.ports.grpc) }}
{{- end }}

{{/* The Secret with tls.crt, tls.key and ca.crt every pod presents and trusts. */}}
{{- define "dsv3.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "dsv3.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/* The name every pod's certificate carries and every pod checks on its peers. */}}
{{- define "dsv3.tlsServerName" -}}
{{- default (printf "%s-cluster" (include "dsv3.fullname" .)) .Values.tls.serverName }}
{{- end }}

{{- define "dsv3.modelClaimName" -}}
{{- .Values.model.source.pvc.claimName }}
{{- end }}

{{/*
Resources of a role's container: the role's resources plus GPUs (gpusPerPod, when
gpu.enabled) and RDMA devices (when rdma.enabled) in requests and limits alike (extended
resources cannot be overcommitted).
*/}}
{{- define "dsv3.resources" -}}
{{- $v := index .root.Values .role }}
{{- $res := deepCopy ($v.resources | default dict) }}
{{- $requests := $res.requests | default dict }}
{{- $limits := $res.limits | default dict }}
{{- $gpus := int ($v.gpusPerPod | default 0) }}
{{- if and .root.Values.gpu.enabled (gt $gpus 0) }}
{{- $_ := set $requests .root.Values.gpu.resourceName $gpus }}
{{- $_ := set $limits .root.Values.gpu.resourceName $gpus }}
{{- end }}
{{- if and .root.Values.rdma.enabled (not (has .role (list "router" "rebalancer"))) }}
{{- $_ := set $requests .root.Values.rdma.resourceName (int .root.Values.rdma.count) }}
{{- $_ := set $limits .root.Values.rdma.resourceName (int .root.Values.rdma.count) }}
{{- end }}
{{- $_ := set $res "requests" $requests }}
{{- $_ := set $res "limits" $limits }}
{{- toYaml $res }}
{{- end }}

{{/*
The pod template of a role: (dict "root" $ "role" "decode" "args" (list ...) "env" (list ...)).
Every process serves grpc.health.v1 on the gRPC port (probes) and /metrics on the HTTP port.
*/}}
{{- define "dsv3.podTemplate" -}}
{{- $root := .root }}
{{- $v := index $root.Values .role -}}
metadata:
  labels:
    {{- include "dsv3.roleLabels" . | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "dsv3.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- $preStop := 0 }}
  {{- if eq .role "router" }}{{ $preStop = include "dsv3.seconds" $root.Values.router.preStopDelay | int }}{{ end }}
  terminationGracePeriodSeconds: {{ add (include "dsv3.seconds" $root.Values.config.drainTimeout) 15 $preStop }}
  containers:
    - name: {{ .role }}
      image: {{ include "dsv3.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: ["/usr/local/bin/dsv3-{{ .role }}"]
      args:
        - --flagfile=/etc/dsv3/{{ .role }}.flags
        {{- range .args }}
        - {{ . | quote }}
        {{- end }}
        {{- range $v.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        {{- with .env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: grpc
          containerPort: {{ $root.Values.ports.grpc }}
          protocol: TCP
        - name: http
          containerPort: {{ $root.Values.ports.http }}
          protocol: TCP
        - name: metrics
          containerPort: {{ $root.Values.ports.metrics }}
          protocol: TCP
      {{- if and (eq .role "router") (gt $preStop 0) }}
      # Kubernetes takes a terminating pod out of the Service's endpoints while the preStop
      # hook runs; only then does SIGTERM make the router refuse new requests.
      lifecycle:
        preStop:
          exec:
            command: ["/bin/sleep", "{{ $preStop }}"]
      {{- end }}
      {{- range $probe := list "startup" "liveness" "readiness" }}
      {{- $p := index $root.Values.probes $probe }}
      {{ $probe }}Probe:
        {{- $service := ternary "readiness" "liveness" (eq $probe "readiness") }}
        {{- if $root.Values.tls.enabled }}
        # The kubelet's gRPC probes cannot do TLS; its HTTPS GETs do (without checking the
        # certificate).
        httpGet:
          path: {{ ternary "/health/ready" "/health/live" (eq $probe "readiness") }}
          port: http
          scheme: HTTPS
        {{- else }}
        grpc:
          port: {{ $root.Values.ports.grpc }}
          service: {{ $service }}
        {{- end }}
        periodSeconds: {{ $p.periodSeconds }}
        failureThreshold: {{ $p.failureThreshold }}
        timeoutSeconds: {{ $p.timeoutSeconds }}
      {{- end }}
      resources:
        {{- include "dsv3.resources" . | nindent 8 }}
      securityContext:
        {{- $sc := deepCopy $root.Values.securityContext }}
        {{- if and $root.Values.rdma.enabled (not (has .role (list "router" "rebalancer"))) }}
        {{- $caps := deepCopy ($sc.capabilities | default dict) }}
        {{- $_ := set $caps "add" (list "IPC_LOCK") }}
        {{- $_ := set $sc "capabilities" $caps }}
        {{- end }}
        {{- toYaml $sc | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/dsv3
          readOnly: true
        - name: model
          mountPath: {{ $root.Values.model.path }}
          readOnly: true
          {{- if and (eq $root.Values.model.source.type "pvc") $root.Values.model.source.pvc.subPath }}
          subPath: {{ $root.Values.model.source.pvc.subPath }}
          {{- end }}
        - name: tmp
          mountPath: /tmp
        - name: shm
          mountPath: /dev/shm
        {{- if and (eq .role "router") $root.Values.router.apiKeys.existingSecret }}
        - name: api-keys
          mountPath: /etc/dsv3/api-keys
          readOnly: true
        {{- end }}
        {{- if $root.Values.tls.enabled }}
        - name: tls
          mountPath: /etc/dsv3/tls
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "dsv3.fullname" $root }}
    - name: model
      {{- if eq $root.Values.model.source.type "hostPath" }}
      hostPath:
        path: {{ $root.Values.model.source.hostPath.path }}
        type: {{ $root.Values.model.source.hostPath.type }}
      {{- else }}
      persistentVolumeClaim:
        claimName: {{ include "dsv3.modelClaimName" $root }}
        readOnly: true
      {{- end }}
    - name: tmp
      emptyDir: {}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $root.Values.sharedMemory.sizeLimit }}
    {{- if and (eq .role "router") $root.Values.router.apiKeys.existingSecret }}
    - name: api-keys
      secret:
        secretName: {{ $root.Values.router.apiKeys.existingSecret }}
    {{- end }}
    {{- if $root.Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "dsv3.tlsSecretName" $root }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $v.affinity }}
  affinity:
    {{- toYaml $v.affinity | nindent 4 }}
  {{- else }}
  # Spread a role's pods over nodes where possible.
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "dsv3.selectorLabels" . | nindent 16 }}
  {{- end }}
{{- end }}

{{/* Seconds of a duration such as 30s, 2m or 1h (for terminationGracePeriodSeconds). */}}
{{- define "dsv3.seconds" -}}
{{- $d := toString . }}
{{- if hasSuffix "ms" $d }}1
{{- else if hasSuffix "s" $d }}{{ trimSuffix "s" $d | int }}
{{- else if hasSuffix "m" $d }}{{ mul (trimSuffix "m" $d | int) 60 }}
{{- else if hasSuffix "h" $d }}{{ mul (trimSuffix "h" $d | int) 3600 }}
{{- else }}{{ $d | int }}
{{- end }}
{{- end }}

{{/* Flags of the attention workers (prefill, decode): UCX, and the expert pool. */}}
{{- define "dsv3.workerTransportFlags" -}}
{{- with .Values.config.ucxTls }}
--ucx_tls={{ . }}
{{- end }}
{{- with .Values.config.ucxNetDevices }}
--ucx_net_devices={{ . }}
{{- end }}
{{- if .Values.expert.enabled }}
--expert_dns={{ include "dsv3.headlessAddress" (dict "root" . "role" "expert") }}
{{- end }}
{{- end }}
