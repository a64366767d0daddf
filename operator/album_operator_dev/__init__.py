"""Developer tooling around the operator, kept out of the operator image.

The local control plane (a real kube-apiserver + etcd, and Qdrant servers for tests), the
``album-operator demo`` story and the CRD file writer behind ``album-operator crds
generate|check``. It imports the runtime package ``album_operator``; the runtime never imports
it (an import-linter contract), except for the CLI's lazy developer subcommands.
"""
