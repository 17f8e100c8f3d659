package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/qualfile/qualfile/internal/config"
)

// TestDeployManifestConfigLoads: the consumer.yaml of the Kubernetes
// manifest (deploy/kubernetes/qualfile.yaml) is a valid configuration,
// every key known, secrets only from the environment and files.
func TestDeployManifestConfigLoads(t *testing.T) {
	var consumerYAML string
	for _, doc := range manifests(t) {
		if doc.Kind == "ConfigMap" {
			consumerYAML = doc.Data["consumer.yaml"]
		}
	}
	if consumerYAML == "" {
		t.Fatal("no ConfigMap with consumer.yaml in the manifest")
	}
	path := filepath.Join(t.TempDir(), "consumer.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(consumerYAML, "<app id>", "tt0123456789abcdef")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatalf("the manifest's consumer.yaml: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the manifest's consumer.yaml: %v", err)
	}
	if cfg.Streams.Replicas != 3 || cfg.Admin.Listen != "0.0.0.0:9090" {
		t.Errorf("replicas %d, admin %q", cfg.Streams.Replicas, cfg.Admin.Listen)
	}
}

// manifests are the documents of deploy/kubernetes/qualfile.yaml.
func manifests(t *testing.T) []manifest {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "deploy", "kubernetes", "qualfile.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var out []manifest
	for {
		var m manifest
		if err := dec.Decode(&m); err != nil {
			return out
		}
		out = append(out, m)
	}
}

// manifest is what the tests read of a document of the manifest.
type manifest struct {
	Kind     string            `yaml:"kind"`
	Data     map[string]string `yaml:"data"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		MinAvailable int `yaml:"minAvailable"`
	} `yaml:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
	SecurityContext              struct {
		RunAsNonRoot   bool   `yaml:"runAsNonRoot"`
		FSGroup        *int64 `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	TopologySpreadConstraints []struct {
		TopologyKey       string `yaml:"topologyKey"`
		WhenUnsatisfiable string `yaml:"whenUnsatisfiable"`
	} `yaml:"topologySpreadConstraints"`
	Containers []struct {
		Name    string           `yaml:"name"`
		Env     []map[string]any `yaml:"env"`
		EnvFrom []map[string]any `yaml:"envFrom"`
		SC      struct {
			RunAsNonRoot             bool  `yaml:"runAsNonRoot"`
			ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
				Add  []string `yaml:"add"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
	} `yaml:"containers"`
	Volumes []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName  string `yaml:"secretName"`
			DefaultMode *int   `yaml:"defaultMode"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

// TestDeployManifestPassesTheGates: the Kubernetes manifest's pod meets Pod
// Security "restricted" (non-root, no privilege escalation, every
// capability dropped, seccomp RuntimeDefault) with a read-only root; its
// credentials are files, never environment variables; every Secret it
// mounts is defined in it; more than one replica is spread across nodes
// and kept by a PodDisruptionBudget; and old and new versions never run
// side by side (Recreate), as docs/operations.md requires.
func TestDeployManifestPassesTheGates(t *testing.T) {
	secrets, kinds := map[string]bool{}, map[string]manifest{}
	for _, m := range manifests(t) {
		if m.Kind == "Secret" {
			secrets[m.Metadata.Name] = true
		}
		kinds[m.Kind] = m
	}
	d, ok := kinds["Deployment"]
	if !ok {
		t.Fatal("no Deployment")
	}
	pod := d.Spec.Template.Spec
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("pod security context %+v: want runAsNonRoot and seccomp RuntimeDefault", pod.SecurityContext)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token it does not need")
	}
	for _, c := range pod.Containers {
		sc := c.SC
		if !sc.RunAsNonRoot || !sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			len(sc.Capabilities.Add) > 0 || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container %s: security context %+v is not restricted", c.Name, sc)
		}
		if len(c.Env) > 0 || len(c.EnvFrom) > 0 {
			t.Errorf("container %s takes environment variables: credentials must be files", c.Name)
		}
	}
	for _, v := range pod.Volumes {
		if v.Secret == nil {
			continue
		}
		if !secrets[v.Secret.SecretName] {
			t.Errorf("volume %s mounts Secret %q, which the manifest does not define", v.Name, v.Secret.SecretName)
		}
		// Secret files are root's; a non-root pod reads them through
		// their group (fsGroup) or not at all.
		mode := 0o644
		if v.Secret.DefaultMode != nil {
			mode = *v.Secret.DefaultMode
		}
		if mode&0o004 == 0 && (pod.SecurityContext.FSGroup == nil || mode&0o040 == 0) {
			t.Errorf("volume %s: mode %#o without fsGroup and group read: the non-root consumer cannot read its secrets", v.Name, mode)
		}
	}
	if d.Spec.Replicas > 1 {
		if len(pod.TopologySpreadConstraints) == 0 || pod.TopologySpreadConstraints[0].TopologyKey != "kubernetes.io/hostname" {
			t.Errorf("%d replicas, not spread across nodes", d.Spec.Replicas)
		}
		if pdb, ok := kinds["PodDisruptionBudget"]; !ok || pdb.Spec.MinAvailable < 1 {
			t.Errorf("%d replicas without a PodDisruptionBudget keeping one", d.Spec.Replicas)
		}
	}
	if d.Spec.Strategy.Type != "Recreate" {
		t.Errorf("strategy %q: a rolling update runs old and new replicas side by side", d.Spec.Strategy.Type)
	}
}

// TestSystemdUnitLoadsItsCredentials: the systemd unit hands every secret
// to the service as a credential (LoadCredential=), never in its
// environment.
func TestSystemdUnitLoadsItsCredentials(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", "qualfile-consumer.service"))
	if err != nil {
		t.Fatal(err)
	}
	creds := 0
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "LoadCredential="):
			creds++
		case strings.HasPrefix(line, "Environment"):
			t.Errorf("%q: secrets go in credentials, not the environment", line)
		}
	}
	if creds < 4 || !strings.Contains(string(b), "/run/credentials/qualfile-consumer.service/") {
		t.Errorf("%d LoadCredential= lines, want one per secret (nats.creds, the Volcengine key pair, the Douyin secret) and the configuration naming them", creds)
	}
}
