package deploy_test

import (
	"net"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// callerLabel is the pod label that lets a caller's pods reach gRPC and REST (the
// deploying docs tell callers to add it).
const callerLabel = "creditsessions/caller"

// netPeer is a pod somewhere in the cluster that may try to connect to the service's pods.
type netPeer struct {
	what      string
	namespace labels.Set
	pod       labels.Set
}

func namespaceLabels(name string) labels.Set {
	return labels.Set{"kubernetes.io/metadata.name": name}
}

// admits reports whether the NetworkPolicies selecting the service's pods let p in on
// port, as Kubernetes evaluates them: policies add up, a rule needs a matching port and
// a matching peer, a peer without a namespace selector means the pods' own namespace.
func admits(t *testing.T, policies []*networkingv1.NetworkPolicy, own labels.Set, p netPeer, port int32, resolve func(intstr.IntOrString) (int32, bool)) bool {
	t.Helper()
	for _, np := range policies {
		for _, rule := range np.Spec.Ingress {
			portOK := len(rule.Ports) == 0
			for _, rp := range rule.Ports {
				n, _ := resolve(*rp.Port)
				portOK = portOK || n == port
			}
			if !portOK {
				continue
			}
			if len(rule.From) == 0 {
				return true
			}
			for _, from := range rule.From {
				nsOK := labels.Equals(p.namespace, own)
				if from.NamespaceSelector != nil {
					sel, err := metav1.LabelSelectorAsSelector(from.NamespaceSelector)
					require.NoError(t, err)
					nsOK = sel.Matches(p.namespace)
				}
				podOK := true
				if from.PodSelector != nil {
					sel, err := metav1.LabelSelectorAsSelector(from.PodSelector)
					require.NoError(t, err)
					podOK = sel.Matches(p.pod)
				}
				if from.IPBlock == nil && nsOK && podOK {
					return true
				}
			}
		}
	}
	return false
}

// checkNetworkPolicies checks who may reach which of the pods' ports, and where the pods
// may connect to, against the ports the Deployment listens on and the flags it passes.
func checkNetworkPolicies(t *testing.T, m manifests, d podInfo, args map[string]string, resolve func(intstr.IntOrString) (int32, bool)) {
	t.Helper()
	require.NotEmpty(t, m.NetworkPolicies)
	isolated := map[networkingv1.PolicyType]bool{}
	for _, np := range m.NetworkPolicies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		require.NoError(t, err)
		assert.False(t, sel.Empty(), "NetworkPolicy %s selects something", np.Name)
		assert.True(t, sel.Matches(d.labels), "NetworkPolicy %s selects the pods", np.Name)
		assert.Contains(t, np.Spec.PodSelector.MatchLabels, "app.kubernetes.io/name", "NetworkPolicy %s selects this app's pods only", np.Name)
		for _, pt := range np.Spec.PolicyTypes {
			isolated[pt] = true
		}
		for _, rule := range np.Spec.Ingress {
			require.NotEmpty(t, rule.Ports, "%s: an ingress rule without ports opens every port", np.Name)
			require.NotEmpty(t, rule.From, "%s: an ingress rule without from lets in every pod of the cluster", np.Name)
			for _, from := range rule.From {
				assert.True(t, from.NamespaceSelector != nil || from.PodSelector != nil || from.IPBlock != nil, "%s: an empty peer", np.Name)
			}
			for _, p := range rule.Ports {
				_, ok := resolve(*p.Port)
				assert.True(t, ok, "%s: ingress on %v, not a port the container listens on", np.Name, p.Port)
			}
		}
	}
	assert.True(t, isolated[networkingv1.PolicyTypeIngress] && isolated[networkingv1.PolicyTypeEgress], "the pods are isolated both ways")

	// Who gets in where.
	own := namespaceLabels(d.namespace)
	port := func(name string) int32 {
		n, ok := resolve(intstr.FromString(name))
		require.True(t, ok, "container port %q", name)
		return n
	}
	_, webhooks := args["webhook-addr"]
	caller := netPeer{"a caller's pod, labelled " + callerLabel, namespaceLabels("underwriting"), labels.Set{callerLabel: "true", "app": "decision-engine"}}
	other := netPeer{"an unlabelled pod of another namespace", namespaceLabels("underwriting"), labels.Set{"app": "batch"}}
	neighbour := netPeer{"an unlabelled pod of the same namespace", own, labels.Set{"app": "neighbour"}}
	prometheus := netPeer{"Prometheus, in the monitoring namespace", namespaceLabels("monitoring"), labels.Set{"app.kubernetes.io/name": "prometheus"}}
	ingress := netPeer{"the ingress controller", namespaceLabels("ingress-nginx"), labels.Set{"app.kubernetes.io/name": "ingress-nginx"}}
	type want struct {
		p    netPeer
		port string
		in   bool
	}
	wants := []want{
		{caller, "grpc", true}, {caller, "http", true}, {caller, "admin", false},
		{other, "grpc", false}, {other, "http", false}, {other, "admin", false},
		{neighbour, "grpc", false}, {neighbour, "admin", false},
		{prometheus, "admin", true}, {prometheus, "grpc", false}, {prometheus, "http", false},
		{ingress, "grpc", false}, {ingress, "http", false},
	}
	if webhooks {
		wants = append(wants, want{ingress, "webhooks", true}, want{caller, "webhooks", false}, want{other, "webhooks", false})
	}
	for _, w := range wants {
		assert.Equal(t, w.in, admits(t, m.NetworkPolicies, own, w.p, port(w.port), resolve), "%s on port %s", w.p.what, w.port)
	}

	// Where the pods may go: DNS, HTTPS to Plaid (anywhere: Plaid publishes no
	// addresses), and Redis when -redis-addr names one, to its port and somewhere named.
	allowedOut := map[string]bool{"53/UDP": true, "53/TCP": true, "443/TCP": true}
	var wantOut []string
	for k := range allowedOut {
		wantOut = append(wantOut, k)
	}
	redisPort := ""
	if addr, ok := args["redis-addr"]; ok {
		redisPort = portOf(t, addr)
		allowedOut[redisPort+"/TCP"] = true
		wantOut = append(wantOut, redisPort+"/TCP")
	}
	var out []string
	for _, np := range m.NetworkPolicies {
		for _, rule := range np.Spec.Egress {
			require.NotEmpty(t, rule.Ports, "%s: an egress rule without ports allows every port", np.Name)
			for _, p := range rule.Ports {
				key := p.Port.String() + "/" + string(*p.Protocol)
				assert.True(t, allowedOut[key], "%s: egress to %s", np.Name, key)
				if p.Port.String() == redisPort {
					assert.NotEmpty(t, rule.To, "%s: egress to Redis names where Redis is", np.Name)
				}
				out = append(out, key)
			}
		}
	}
	assert.ElementsMatch(t, wantOut, out)
}

// podInfo is what the NetworkPolicy checks need of the Deployment.
type podInfo struct {
	namespace string
	labels    labels.Set
}

// portOf is the port of a -redis-addr value: host:port or a redis:// or rediss:// URL.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		require.NoError(t, err)
		if u.Port() == "" {
			return "6379"
		}
		return u.Port()
	}
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err, "-redis-addr %s", addr)
	return p
}

// checkCertificate checks a cert-manager Certificate for the server: it fills the
// Secret the pods mount for -tls-cert, and names every Service callers reach over TLS in
// every form they may dial.
func checkCertificate(t *testing.T, cert *unstructured.Unstructured, mounts map[string]corev1.Volume, args map[string]string, services map[string]*corev1.Service) {
	t.Helper()
	secret, _, err := unstructured.NestedString(cert.Object, "spec", "secretName")
	require.NoError(t, err)
	tls := mounts[path.Dir(args["tls-cert"])]
	require.NotNil(t, tls.Secret, "-tls-cert is in a Secret")
	assert.Equal(t, tls.Secret.SecretName, secret, "the Certificate fills the Secret the pods mount")

	names, _, err := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	require.NoError(t, err)
	ns := cert.GetNamespace()
	for _, svc := range []string{"creditsessions-grpc", "creditsessions-rest"} {
		require.Contains(t, services, svc)
		for _, name := range []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"} {
			assert.Contains(t, names, name, "the server certificate names %s", name)
		}
	}
	for _, name := range names {
		assert.NotContains(t, name, "NAMESPACE", "a placeholder left in the certificate's names")
	}
	usages, _, err := unstructured.NestedStringSlice(cert.Object, "spec", "usages")
	require.NoError(t, err)
	assert.Contains(t, usages, "server auth")
	issuer, _, err := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
	require.NoError(t, err)
	assert.NotEmpty(t, issuer)
}
