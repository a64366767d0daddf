{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "album-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the namespaced objects of this release. */}}
{{- define "album-operator.fullname" -}}
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

{{/* Name of RBAC objects, unique across releases in different namespaces: ClusterRoles and the
Roles this release puts into namespaces other than its own. */}}
{{- define "album-operator.rbacName" -}}
{{- printf "%s-%s" .Release.Namespace (include "album-operator.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "album-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "album-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "album-operator.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{- define "album-operator.labels" -}}
helm.sh/chart: {{ include "album-operator.chart" . | quote }}
{{ include "album-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/part-of: qdrant-album-operator
{{- end }}

{{- define "album-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "album-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "album-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "album-operator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "album-operator.serviceAccountName" . | quote }}
  namespace: {{ .Release.Namespace | quote }}
{{- end }}

{{/* "true" when no Qdrant server is configured: the embedded engine is used. */}}
{{- define "album-operator.embedded" -}}
{{- if not .Values.qdrant.existingSecret }}true{{ end }}
{{- end }}

{{- define "album-operator.claimName" -}}
{{- default (printf "%s-data" (include "album-operator.fullname" .)) .Values.embedded.persistence.existingClaim }}
{{- end }}

{{/* "true" when built snapshots live on their own PersistentVolumeClaim: with a Qdrant server
and snapshots.persistence.enabled (with the embedded engine they share its claim). */}}
{{- define "album-operator.snapshotClaim" -}}
{{- if and (not (include "album-operator.embedded" .)) .Values.snapshots.enabled .Values.snapshots.persistence.enabled }}true{{ end }}
{{- end }}

{{- define "album-operator.snapshotClaimName" -}}
{{- default (printf "%s-snapshots" (include "album-operator.fullname" .)) .Values.snapshots.persistence.existingClaim }}
{{- end }}

{{/* Where the data volume is mounted: the embedded engine and built snapshots live under it. */}}
{{- define "album-operator.dataDir" -}}/var/lib/album-operator{{- end }}

{{/* Secret names without a namespace: granted in every watched namespace. */}}
{{- define "album-operator.bareSecretNames" -}}
{{- $names := list }}
{{- range .Values.rbac.extraSecretNames }}
{{- if not (contains "/" .) }}{{ $names = append $names . }}{{ end }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* JSON map namespace -> Secret names granted in that namespace only: the Qdrant Secret and
the snapshot endpoint's TLS Secret (in the release namespace) and every "namespace/name"
entry of rbac.extraSecretNames. */}}
{{- define "album-operator.namespacedSecretNames" -}}
{{- $grants := dict }}
{{- if .Values.qdrant.existingSecret }}
{{- $_ := set $grants .Release.Namespace (list .Values.qdrant.existingSecret) }}
{{- end }}
{{- $tls := (.Values.snapshots.tls | default dict).secretName }}
{{- if and .Values.snapshots.enabled $tls }}
{{- $_ := set $grants .Release.Namespace (append (get $grants .Release.Namespace | default list) $tls | uniq) }}
{{- end }}
{{- range .Values.rbac.extraSecretNames }}
{{- if contains "/" . }}
{{- $parts := splitList "/" . }}
{{- $ns := index $parts 0 }}
{{- $_ := set $grants $ns (append (get $grants $ns | default list) (index $parts 1) | uniq) }}
{{- end }}
{{- end }}
{{- toJson $grants }}
{{- end }}

{{/* The rules the operator needs on its own kinds, in every namespace it watches. kopf lists,
watches and patches them (finalizers, annotations) and patches their status subresource; the
operator lists AlbumCollections for MasterMerge; kopf posts core/v1 Events. */}}
{{- define "album-operator.watchedRules" -}}
- apiGroups: [albumops.io]
  resources: [albumcollections, mastermerges, edgesnapshotpolicies]
  verbs: [get, list, watch, patch]
- apiGroups: [albumops.io]
  resources: [albumcollections/status, mastermerges/status, edgesnapshotpolicies/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if gt (int .Values.replicaCount) 1 }}
- apiGroups: [kopf.dev]
  resources: [{{ if .Values.watchNamespaces }}kopfpeerings{{ else }}clusterkopfpeerings{{ end }}]
  verbs: [get, list, watch, patch]
{{- end }}
{{- $bare := include "album-operator.bareSecretNames" . | fromJsonArray }}
{{- if $bare }}
- apiGroups: [""]
  resources: [secrets]
  resourceNames: {{ toJson $bare }}
  verbs: [get]
{{- end }}
{{- end }}

{{/* Checks the schema cannot express; also guards renders made with --skip-schema-validation. */}}
{{- define "album-operator.validate" -}}
{{- if gt (int .Values.replicaCount) 1 }}
{{- if include "album-operator.embedded" . }}
{{- fail "replicaCount > 1 is not possible with the embedded engine (no qdrant.existingSecret): it allows one process per data path" }}
{{- end }}
{{- end }}
{{- if and (include "album-operator.snapshotClaim" .) (gt (int .Values.replicaCount) 1) (not .Values.snapshots.persistence.existingClaim) (ne .Values.snapshots.persistence.accessMode "ReadWriteMany") }}
{{- fail "snapshots.persistence with replicaCount > 1 needs accessMode ReadWriteMany: every replica mounts the one claim" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.snapshots.ingress.enabled (not .Values.snapshots.enabled) }}
{{- fail "snapshots.ingress.enabled needs snapshots.enabled" }}
{{- end }}
{{- if and .Values.snapshots.ingress.enabled (not .Values.snapshots.ingress.host) }}
{{- fail "snapshots.ingress.host is required when snapshots.ingress.enabled" }}
{{- end }}
{{- end }}

{{/* topologySpreadConstraints, each without a labelSelector given the chart's selector labels:
the usual constraint spreads this release's Pods. */}}
{{- define "album-operator.topologySpread" -}}
{{- $selector := dict "matchLabels" (include "album-operator.selectorLabels" . | fromYaml) }}
{{- $constraints := list }}
{{- range .Values.topologySpreadConstraints }}
{{- $constraints = append $constraints (merge (deepCopy .) (dict "labelSelector" $selector)) }}
{{- end }}
{{- toYaml $constraints }}
{{- end }}

{{/* Labels of the `helm test` Pod, which the NetworkPolicy lets reach the health port. Its
app.kubernetes.io/name differs, so no selector of the operator's Pods matches it. */}}
{{- define "album-operator.testLabels" -}}
helm.sh/chart: {{ include "album-operator.chart" . | quote }}
app.kubernetes.io/name: {{ printf "%s-test" (include "album-operator.name" .) | trunc 63 | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end }}

{{/* An ingress rule of the NetworkPolicy: a named container port, from these peers (none:
from anywhere). */}}
{{- define "album-operator.ingressRule" -}}
- ports:
    - port: {{ .port }}
      protocol: TCP
  {{- with .from }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
