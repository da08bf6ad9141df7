{{/* Names, labels and the rendered agent config shared by every template. */}}
{{- define "alknet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "alknet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "alknet.labels" -}}
app.kubernetes.io/name: {{ include "alknet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "alknet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alknet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Deployment or StatefulSet. */}}
{{- define "alknet.workloadKind" -}}
{{- if or .Values.persistence.enabled (eq .Values.workload "statefulset") -}}StatefulSet{{- else -}}Deployment{{- end -}}
{{- end -}}

{{- define "alknet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "alknet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "alknet.hostKeySecret" -}}
{{- .Values.hostKey.existingSecret | default (printf "%s-host-key" (include "alknet.fullname" .)) -}}
{{- end -}}

{{- define "alknet.tlsSecret" -}}
{{- if eq .Values.tls.source "secret" -}}
{{- required "tls.existingSecret is required with tls.source=secret" .Values.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "alknet.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* True (non-empty) when the pod mounts a TLS Secret. */}}
{{- define "alknet.tlsMounted" -}}
{{- if and .Values.tls.enabled (ne .Values.tls.source "agent") -}}true{{- end -}}
{{- end -}}

{{/* Paths inside the pod. The state volume is mounted at /var/lib/alknet and the agent's state_dir
     is a directory it creates inside (mode 0700): a volume root is group-writable (emptyDir 0777,
     fsGroup adds g+rwx), which the agent refuses for the admin socket's directory. */}}
{{- define "alknet.stateDir" -}}/var/lib/alknet/state{{- end -}}
{{- define "alknet.adminSocket" -}}/var/lib/alknet/state/admin.sock{{- end -}}
{{- define "alknet.configPath" -}}/etc/alknet/config/agent.yaml{{- end -}}

{{/* Seconds of an agent duration ("10s", "1m30s", "500ms", bare "30"), rounded up. */}}
{{- define "alknet.durationSeconds" -}}
{{- $d := toString . -}}
{{- if regexMatch "^[0-9]+$" $d -}}
{{- $d -}}
{{- else -}}
{{- $ms := 0 -}}
{{- range $part := regexFindAll "[0-9]+(ms|us|ns|h|m|s)" $d -1 -}}
{{- $n := regexFind "^[0-9]+" $part | atoi -}}
{{- $unit := trimPrefix (regexFind "^[0-9]+" $part) $part -}}
{{- if eq $unit "h" }}{{ $ms = add $ms (mul $n 3600000) }}
{{- else if eq $unit "m" }}{{ $ms = add $ms (mul $n 60000) }}
{{- else if eq $unit "s" }}{{ $ms = add $ms (mul $n 1000) }}
{{- else if eq $unit "ms" }}{{ $ms = add $ms $n }}
{{- else if eq $unit "us" }}{{ $ms = add $ms (div (add $n 999) 1000) }}
{{- else }}{{ $ms = add $ms (div (add $n 999999) 1000000) }}
{{- end -}}
{{- end -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}
{{- end -}}

{{- define "alknet.terminationGracePeriodSeconds" -}}
{{- $grace := dig "limits" "shutdown_grace" "10s" (.Values.config | default dict) -}}
{{- add (include "alknet.durationSeconds" $grace | atoi) .Values.lifecycle.preStopSleepSeconds .Values.lifecycle.terminationGraceMarginSeconds -}}
{{- end -}}

{{/* agent.yaml: values.config plus the keys the chart owns. */}}
{{- define "alknet.agentConfig" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $listen := list (printf "tcp://0.0.0.0:%v" .Values.ports.ssh) -}}
{{- if .Values.tls.enabled -}}
{{- $listen = append $listen (printf "tls://0.0.0.0:%v" .Values.ports.tls) -}}
{{- end -}}
{{- $_ := set $cfg "state_dir" (include "alknet.stateDir" .) -}}
{{- $_ = set $cfg "listen" $listen -}}
{{- $_ = set $cfg "host_keys" (list (printf "/etc/alknet/host-key/%s" .Values.hostKey.secretKey)) -}}
{{- $_ = set $cfg "authorized_keys" (list "/etc/alknet/authorized-keys/authorized_keys") -}}
{{- $metrics := get $cfg "metrics" | default dict -}}
{{- $_ = set $metrics "listen" (printf "0.0.0.0:%v" .Values.ports.metrics) -}}
{{- $_ = set $cfg "metrics" $metrics -}}
{{- $admin := get $cfg "admin" | default dict -}}
{{- $_ = set $admin "socket" (include "alknet.adminSocket" .) -}}
{{- $_ = set $cfg "admin" $admin -}}
{{- if include "alknet.tlsMounted" . -}}
{{- $tls := get $cfg "tls" | default dict -}}
{{- $_ = set $tls "cert" "/etc/alknet/tls/tls.crt" -}}
{{- $_ = set $tls "key" "/etc/alknet/tls/tls.key" -}}
{{- $_ = set $cfg "tls" $tls -}}
{{- end -}}
{{- with .Values.state.etcd.endpoints -}}
{{- $etcd := $.Values.state.etcd -}}
{{- $state := dict "store" (printf "%s://%s%s" (ternary "etcds" "etcd" $etcd.tls.enabled) (join "," .) $etcd.prefix) -}}
{{- if and $etcd.tls.enabled $etcd.tls.existingSecret -}}
{{- $_ := set $state "etcd_ca" "/etc/alknet/etcd/ca.crt" -}}
{{- if $etcd.tls.clientCertificate -}}
{{- $_ := set $state "etcd_cert" "/etc/alknet/etcd/tls.crt" -}}
{{- $_ := set $state "etcd_key" "/etc/alknet/etcd/tls.key" -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "state" $state -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The etcd TLS Secret is mounted (state.etcd with tls.existingSecret). */}}
{{- define "alknet.etcdTlsMounted" -}}
{{- if and .Values.state.etcd.endpoints .Values.state.etcd.tls.enabled .Values.state.etcd.tls.existingSecret -}}true{{- end -}}
{{- end -}}
