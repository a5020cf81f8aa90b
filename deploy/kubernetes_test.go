package deploy_test

import (
	"bytes"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/authz"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifests is a rendered kustomization, every object decoded into its k8s.io/api type.
type manifests struct {
	Deployments     []*appsv1.Deployment
	Services        map[string]*corev1.Service
	ServiceAccounts map[string]*corev1.ServiceAccount
	ConfigMaps      map[string]*corev1.ConfigMap
	Namespaces      []*corev1.Namespace
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicies []*networkingv1.NetworkPolicy
	// Certificates are cert-manager's, whose Go types are not a dependency: decoded as
	// unstructured, their fields checked by path.
	Certificates []*unstructured.Unstructured
}

// render runs kustomize on dir, as kubectl apply -k would, and decodes every object
// strictly: a field the Kubernetes API does not have (a typo, a field at the wrong
// level) fails, and so does a kind this test does not know.
func render(t *testing.T, dir string) manifests {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	require.NoError(t, err, "kustomize build %s", dir)
	m := manifests{
		Services: map[string]*corev1.Service{}, ServiceAccounts: map[string]*corev1.ServiceAccount{},
		ConfigMaps: map[string]*corev1.ConfigMap{},
	}
	for _, r := range resources.Resources() {
		data, err := r.AsYAML()
		require.NoError(t, err)
		var typed interface{ GetName() string }
		apiVersion, kind := r.GetApiVersion(), r.GetKind()
		switch apiVersion + "/" + kind {
		case "apps/v1/Deployment":
			o := &appsv1.Deployment{}
			typed, m.Deployments = o, append(m.Deployments, o)
		case "v1/Service":
			o := &corev1.Service{}
			typed, m.Services[r.GetName()] = o, o
		case "v1/ServiceAccount":
			o := &corev1.ServiceAccount{}
			typed, m.ServiceAccounts[r.GetName()] = o, o
		case "v1/ConfigMap":
			o := &corev1.ConfigMap{}
			typed, m.ConfigMaps[r.GetName()] = o, o
		case "v1/Namespace":
			o := &corev1.Namespace{}
			typed, m.Namespaces = o, append(m.Namespaces, o)
		case "policy/v1/PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			typed, m.PDBs = o, append(m.PDBs, o)
		case "autoscaling/v2/HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			typed, m.HPAs = o, append(m.HPAs, o)
		case "networking.k8s.io/v1/NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			typed, m.NetworkPolicies = o, append(m.NetworkPolicies, o)
		case "cert-manager.io/v1/Certificate":
			o := &unstructured.Unstructured{}
			require.NoError(t, yaml.Unmarshal(data, &o.Object))
			m.Certificates = append(m.Certificates, o)
			continue
		default:
			t.Fatalf("%s: %s %s is not a kind this test decodes; add it", dir, apiVersion, kind)
		}
		require.NoError(t, yaml.UnmarshalStrict(data, typed), "%s %s:\n%s", kind, r.GetName(), data)
	}
	return m
}

// listenPorts pairs each listen flag with the name of the container port it serves.
var listenPorts = map[string]string{"grpc-addr": "grpc", "http-addr": "http", "admin-addr": "admin", "webhook-addr": "webhooks"}

// optInListeners are the listen flags an opt-in Component adds: the image's EXPOSE does
// not list their ports, since its default CMD does not listen on them.
var optInListeners = map[string]bool{"webhook-addr": true}

// The directories rendered: the base, the example overlay, and the example with every
// opt-in Component (webhooks, Redis, cert-manager).
var kustomizations = []string{"kubernetes/base", "kubernetes/overlays/example", "kubernetes/overlays/full"}

func TestKubernetesManifests(t *testing.T) {
	bin := serviceBinary(t)
	flags := binaryFlags(t, bin)
	binary, err := os.ReadFile(bin)
	require.NoError(t, err)
	img := readImage(t)
	users := img.Final.all("USER")
	require.Len(t, users, 1)
	imageUID, _ := parseUser(t, users[0].Args)
	var exposed []string
	for _, in := range img.Final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.Args)...)
	}

	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			m := render(t, dir)
			require.Len(t, m.Deployments, 1)
			d := m.Deployments[0]
			pod := d.Spec.Template
			require.Len(t, pod.Spec.Containers, 1)
			c := pod.Spec.Containers[0]
			podLabels := labels.Set(pod.Labels)
			matches := func(what string, sel *metav1.LabelSelector) {
				t.Helper()
				require.NotNil(t, sel, "%s has a selector", what)
				s, err := metav1.LabelSelectorAsSelector(sel)
				require.NoError(t, err)
				assert.False(t, s.Empty(), "%s selects something", what)
				assert.True(t, s.Matches(podLabels), "%s selects the pods (%v)", what, sel)
				assert.Contains(t, sel.MatchLabels, "app.kubernetes.io/name", "%s selects this app's pods only", what)
			}
			matches("the Deployment", d.Spec.Selector)

			// Replicas and the rollout: the autoscaler owns the count, so the Deployment
			// names none (an apply would reset the count to it).
			assert.Nil(t, d.Spec.Replicas, "the HorizontalPodAutoscaler owns the replica count")
			require.NotNil(t, d.Spec.Strategy.RollingUpdate)
			assert.Equal(t, intstr.FromInt32(0), *d.Spec.Strategy.RollingUpdate.MaxUnavailable, "no capacity lost in a rollout")

			// Hardening.
			psc := pod.Spec.SecurityContext
			require.NotNil(t, psc)
			assert.Equal(t, ptr(true), psc.RunAsNonRoot)
			assert.Equal(t, ptr(int64(imageUID)), psc.RunAsUser, "the image's USER")
			require.NotNil(t, psc.SeccompProfile)
			assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)
			csc := c.SecurityContext
			require.NotNil(t, csc)
			assert.Equal(t, ptr(false), csc.AllowPrivilegeEscalation)
			assert.Equal(t, ptr(true), csc.ReadOnlyRootFilesystem)
			require.NotNil(t, csc.Capabilities)
			assert.Equal(t, []corev1.Capability{"ALL"}, csc.Capabilities.Drop)
			assert.Empty(t, csc.Capabilities.Add)
			assert.NotEqual(t, ptr(true), csc.Privileged)
			assert.Equal(t, ptr(false), pod.Spec.AutomountServiceAccountToken)
			sa := m.ServiceAccounts[pod.Spec.ServiceAccountName]
			require.NotNil(t, sa, "the pod's ServiceAccount %q is in the manifests", pod.Spec.ServiceAccountName)
			assert.Equal(t, ptr(false), sa.AutomountServiceAccountToken)

			// Resources: requests and limits, and a Go memory limit under the container's.
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, okReq := c.Resources.Requests[name]
				lim, okLim := c.Resources.Limits[name]
				require.True(t, okReq && okLim, "%s: request and limit", name)
				assert.LessOrEqual(t, req.Cmp(lim), 0, "%s: request within limit", name)
			}
			memLimit := c.Resources.Limits[corev1.ResourceMemory]
			goMemLimit := envValue(c, "GOMEMLIMIT")
			require.NotEmpty(t, goMemLimit, "GOMEMLIMIT, so the GC works before the OOM killer does")
			q, err := resource.ParseQuantity(strings.TrimSuffix(goMemLimit, "B"))
			require.NoError(t, err, "GOMEMLIMIT %q", goMemLimit)
			assert.Less(t, q.Value(), memLimit.Value(), "GOMEMLIMIT below the memory limit")
			assert.Greater(t, q.Value(), memLimit.Value()*8/10, "GOMEMLIMIT near the memory limit")

			// Every argument is a flag the binary accepts, written -name=value.
			args := map[string]string{}
			for _, arg := range c.Args {
				name, value := flagName(t, arg)
				assert.Contains(t, flags, name, "the Deployment passes -%s, which the binary does not accept", name)
				args[name] = value
			}
			assert.Empty(t, c.Command, "the image's ENTRYPOINT runs")
			for _, e := range c.Env {
				assert.True(t, bytes.Contains(binary, []byte(e.Name)), "the Deployment sets %s, which the binary does not read", e.Name)
			}

			// The image: a released version or a digest, never latest.
			if _, digest, ok := strings.Cut(c.Image, "@"); ok {
				assert.True(t, strings.HasPrefix(digest, "sha256:"), "image %s: a sha256 digest", c.Image)
			} else {
				slash, colon := strings.LastIndex(c.Image, "/"), strings.LastIndex(c.Image, ":")
				require.Greater(t, colon, slash, "image %s names a version (no tag means latest)", c.Image)
				assert.NotEqual(t, "latest", c.Image[colon+1:], "image %s", c.Image)
			}

			// Ports: the listen flags, the container's ports, the image's EXPOSE.
			containerPorts := map[string]int32{}
			for _, p := range c.Ports {
				containerPorts[p.Name] = p.ContainerPort
			}
			var exposedByDefault []string
			for flag, portName := range listenPorts {
				if optInListeners[flag] {
					continue
				}
				exposedByDefault = append(exposedByDefault, strconv.Itoa(int(containerPorts[portName])))
			}
			assert.ElementsMatch(t, exposed, exposedByDefault, "the container's ports are the image's EXPOSE, and those of opt-in listeners")
			for name := range containerPorts {
				served := false
				for flag, portName := range listenPorts {
					_, set := args[flag]
					served = served || (set && portName == name)
				}
				assert.True(t, served, "container port %q: no listen flag serves it", name)
			}
			for flag, portName := range listenPorts {
				value, ok := args[flag]
				if !ok && optInListeners[flag] {
					assert.NotContains(t, containerPorts, portName, "a %s port without -%s", portName, flag)
					continue
				}
				require.True(t, ok, "-%s is set", flag)
				host, port, ok := strings.Cut(value, ":")
				require.True(t, ok)
				assert.Empty(t, host, "-%s listens on all interfaces, or the pod's IP cannot reach it", flag)
				assert.Equal(t, port, strconv.Itoa(int(containerPorts[portName])), "-%s serves container port %q", flag, portName)
			}
			resolve := func(p intstr.IntOrString) (int32, bool) {
				if p.Type == intstr.String {
					n, ok := containerPorts[p.StrVal]
					return n, ok
				}
				for _, n := range containerPorts {
					if n == p.IntVal {
						return n, true
					}
				}
				return 0, false
			}

			// Probes: plaintext HTTP on the admin listener.
			for name, probe := range map[string]struct {
				p    *corev1.Probe
				path string
			}{"startup": {c.StartupProbe, "/healthz"}, "liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
				require.NotNil(t, probe.p, "%s probe", name)
				require.NotNil(t, probe.p.HTTPGet, "%s probe: HTTP", name)
				assert.Equal(t, probe.path, probe.p.HTTPGet.Path, "%s probe", name)
				n, ok := resolve(probe.p.HTTPGet.Port)
				assert.True(t, ok, "%s probe's port is one the container listens on", name)
				assert.Equal(t, containerPorts["admin"], n, "%s probe on the admin listener", name)
				assert.Contains(t, []corev1.URIScheme{"", corev1.URISchemeHTTP}, probe.p.HTTPGet.Scheme)
			}

			// Shutdown: readiness fails before the drain ends, and the kubelet waits longer
			// than drain and grace together.
			drain, err := time.ParseDuration(args["shutdown-drain"])
			require.NoError(t, err, "-shutdown-drain is set")
			grace, err := time.ParseDuration(args["shutdown-grace"])
			require.NoError(t, err, "-shutdown-grace is set")
			rp := c.ReadinessProbe
			readinessNotices := time.Duration(rp.PeriodSeconds*rp.FailureThreshold) * time.Second
			assert.Greater(t, drain, readinessNotices, "the drain outlasts readiness noticing the shutdown")
			require.NotNil(t, pod.Spec.TerminationGracePeriodSeconds)
			assert.Greater(t, time.Duration(*pod.Spec.TerminationGracePeriodSeconds)*time.Second, drain+grace)

			// Topology spread across nodes.
			spread := false
			for _, tsc := range pod.Spec.TopologySpreadConstraints {
				if tsc.TopologyKey == "kubernetes.io/hostname" {
					spread = true
					matches("the spread across nodes", tsc.LabelSelector)
				}
			}
			assert.True(t, spread, "replicas spread across nodes")

			// Scrape annotations name the admin port.
			assert.Equal(t, "true", pod.Annotations["prometheus.io/scrape"])
			assert.Equal(t, strconv.Itoa(int(containerPorts["admin"])), pod.Annotations["prometheus.io/port"])
			assert.Equal(t, "/metrics", pod.Annotations["prometheus.io/path"])

			// Files: every path an argument or the environment names is in a mounted
			// volume, and where the volume's content is known, the file is in it.
			mounts := map[string]corev1.Volume{}
			for _, vm := range c.VolumeMounts {
				assert.True(t, vm.ReadOnly, "%s mounted read-only", vm.MountPath)
				assert.Empty(t, vm.SubPath, "%s: subPath mounts never see rotated files", vm.MountPath)
				for _, v := range pod.Spec.Volumes {
					if v.Name == vm.Name {
						mounts[vm.MountPath] = v
					}
				}
				require.Contains(t, mounts, vm.MountPath, "volume %s exists", vm.Name)
			}
			paths := map[string]string{}
			for name, value := range args {
				if strings.HasPrefix(value, "/") {
					paths["-"+name] = value
				}
			}
			for _, e := range c.Env {
				if strings.HasSuffix(e.Name, "_FILE") {
					paths[e.Name] = e.Value
					assert.True(t, bytes.Contains(binary, []byte(e.Name)), "the binary reads %s", e.Name)
				}
			}
			for _, want := range []string{"-tls-cert", "-tls-key", "-client-ca", "-authz-policy", "PLAID_CLIENT_ID_FILE", "PLAID_SECRET_FILE"} {
				assert.Contains(t, paths, want)
			}
			for who, p := range paths {
				checkMounted(t, m, mounts, who, p)
			}

			// Services: the headless one for gRPC, a ClusterIP one for REST, both on
			// ports the container listens on.
			grpcSvc, restSvc := m.Services["creditsessions-grpc"], m.Services["creditsessions-rest"]
			require.NotNil(t, grpcSvc)
			require.NotNil(t, restSvc)
			assert.Equal(t, corev1.ClusterIPNone, grpcSvc.Spec.ClusterIP, "headless, for client-side balancing")
			assert.False(t, grpcSvc.Spec.PublishNotReadyAddresses, "draining pods leave DNS")
			assert.Contains(t, []corev1.ServiceType{"", corev1.ServiceTypeClusterIP}, restSvc.Spec.Type)
			assert.NotEqual(t, corev1.ClusterIPNone, restSvc.Spec.ClusterIP)
			for svcName, svc := range map[string]*corev1.Service{"grpc": grpcSvc, "http": restSvc} {
				matches("Service "+svc.Name, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
				require.Len(t, svc.Spec.Ports, 1)
				n, ok := resolve(svc.Spec.Ports[0].TargetPort)
				assert.True(t, ok, "Service %s targets a container port", svc.Name)
				assert.Equal(t, containerPorts[svcName], n)
			}
			assert.Equal(t, int32(50051), grpcSvc.Spec.Ports[0].Port, "the port callers dial")

			// Disruptions and autoscaling.
			require.Len(t, m.PDBs, 1)
			matches("the PodDisruptionBudget", m.PDBs[0].Spec.Selector)
			require.NotNil(t, m.PDBs[0].Spec.MaxUnavailable)
			assert.Equal(t, intstr.FromInt32(1), *m.PDBs[0].Spec.MaxUnavailable)
			require.Len(t, m.HPAs, 1)
			hpa := m.HPAs[0]
			assert.Equal(t, autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name}, hpa.Spec.ScaleTargetRef)
			require.NotNil(t, hpa.Spec.MinReplicas)
			assert.GreaterOrEqual(t, *hpa.Spec.MinReplicas, int32(2), "more than one replica at all times")
			assert.Greater(t, hpa.Spec.MaxReplicas, *hpa.Spec.MinReplicas)

			// Network: who may reach which port, and where the pods may go.
			checkNetworkPolicies(t, m, podInfo{namespace: d.Namespace, labels: podLabels}, args, resolve)

			// Opt-in listeners have a Service.
			if _, ok := args["webhook-addr"]; ok {
				svc := m.Services["creditsessions-webhooks"]
				require.NotNil(t, svc, "-webhook-addr has a Service for the ingress")
				matches("Service "+svc.Name, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
				require.Len(t, svc.Spec.Ports, 1)
				n, ok := resolve(svc.Spec.Ports[0].TargetPort)
				assert.True(t, ok)
				assert.Equal(t, containerPorts["webhooks"], n)
			}

			// Every namespaced object in the Deployment's namespace: an object of a
			// Component an overlay lists lands in the overlay's namespace, not default.
			namespaced := []metav1.Object{}
			for _, o := range m.Services {
				namespaced = append(namespaced, o)
			}
			for _, o := range m.NetworkPolicies {
				namespaced = append(namespaced, o)
			}
			for _, o := range m.Certificates {
				namespaced = append(namespaced, o)
			}
			for _, o := range m.ConfigMaps {
				namespaced = append(namespaced, o)
			}
			namespaced = append(namespaced, m.PDBs[0], hpa, sa)
			for _, o := range namespaced {
				assert.Equal(t, d.Namespace, o.GetNamespace(), "%s: in the Deployment's namespace", o.GetName())
			}

			// The server certificate, where cert-manager issues it.
			for _, cert := range m.Certificates {
				checkCertificate(t, cert, mounts, args, m.Services)
			}

			// The authorization policy parses as gRFC A43 policy.
			authzVolume := mounts[path.Dir(args["authz-policy"])]
			require.NotNil(t, authzVolume.ConfigMap)
			policy := m.ConfigMaps[authzVolume.ConfigMap.Name].Data[path.Base(args["authz-policy"])]
			_, err = authz.NewStatic(policy)
			assert.NoError(t, err, "the authorization policy")
		})
	}
}

func TestExampleOverlayChangesWhatAnOverlayShould(t *testing.T) {
	base, example := render(t, "kubernetes/base"), render(t, "kubernetes/overlays/example")
	require.Len(t, example.Namespaces, 1)
	ns := example.Namespaces[0]
	assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"], "the pods meet Pod Security's restricted level")
	d := example.Deployments[0]
	assert.Equal(t, ns.Name, d.Namespace)
	c := d.Spec.Template.Spec.Containers[0]
	assert.NotEqual(t, base.Deployments[0].Spec.Template.Spec.Containers[0].Image, c.Image, "a released image")
	assert.Regexp(t, `:[0-9]+\.[0-9]+\.[0-9]+$`, c.Image, "a versioned tag, not latest")
	assert.Equal(t, "production", envValue(c, "PLAID_ENV"))
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// checkMounted requires path p to be a file in a mounted volume and, where the volume
// lists its files (items) or its content is in the manifests (a generated ConfigMap),
// to be one of them.
func checkMounted(t *testing.T, m manifests, mounts map[string]corev1.Volume, who, p string) {
	t.Helper()
	dir, file := path.Split(p)
	v, ok := mounts[strings.TrimSuffix(dir, "/")]
	if !assert.True(t, ok, "%s names %s, which is not in a mounted directory", who, p) {
		return
	}
	switch {
	case v.Secret != nil && len(v.Secret.Items) > 0:
		var files []string
		for _, it := range v.Secret.Items {
			files = append(files, it.Path)
		}
		assert.Contains(t, files, file, "%s: Secret %s's items", who, v.Secret.SecretName)
	case v.Secret != nil:
		if v.Secret.SecretName == "creditsessions-tls" {
			assert.Contains(t, []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey}, file, "%s: a kubernetes.io/tls Secret's keys", who)
		}
	case v.ConfigMap != nil:
		if cm, ok := m.ConfigMaps[v.ConfigMap.Name]; ok {
			assert.Contains(t, cm.Data, file, "%s: ConfigMap %s", who, cm.Name)
		}
	default:
		t.Errorf("%s: volume %s is neither a Secret nor a ConfigMap", who, v.Name)
	}
	if v.Secret != nil {
		assert.Equal(t, ptr(int32(0o440)), v.Secret.DefaultMode, "%s: secrets readable by the pod's group only", who)
	}
}

func ptr[T any](v T) *T { return &v }
