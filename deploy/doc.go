// Package deploy holds no code. Its tests check what ships against the binary it ships:
// the Dockerfile at the repository's root (a static binary, run as a non-root user in
// an empty root that holds only what the image's final stage copies), the Kubernetes
// manifests under kubernetes/ (the base, the overlays and the opt-in Components rendered
// with kustomize, decoded strictly, their flags, ports, files and network policies
// checked against the binary), and several replicas behaving as one
// service through a rolling restart.
package deploy
