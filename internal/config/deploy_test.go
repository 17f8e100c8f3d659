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
	f, err := os.Open(filepath.Join("..", "..", "deploy", "kubernetes", "qualfile.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var consumerYAML string
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
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
