package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/qualfile/qualfile/internal/natstest"
)

// apply applies opts to fresh client options.
func apply(t *testing.T, opts []nats.Option) nats.Options {
	t.Helper()
	o := nats.GetDefaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			t.Fatalf("option: %v", err)
		}
	}
	return o
}

// selfSigned writes a self-signed certificate and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "qualfile test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	return certFile, keyFile
}

func TestNATSOptionsDefaults(t *testing.T) {
	opts, err := Default().NATSOptions(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	o := apply(t, opts)
	if o.Name != "qualfile" || o.MaxReconnect != -1 || o.ReconnectWait != 2*time.Second || o.Timeout != 5*time.Second {
		t.Errorf("options = name %q, max reconnect %d, reconnect wait %s, timeout %s", o.Name, o.MaxReconnect, o.ReconnectWait, o.Timeout)
	}
	if o.Secure || o.User != "" || o.Nkey != "" || o.UserJWT != nil {
		t.Errorf("unexpected auth or TLS: %+v", o)
	}
	// Its replies arrive on the consumer's own inbox, which the other
	// roles may not read (internal/roles).
	if o.InboxPrefix != "_INBOX.filing.consumer" {
		t.Errorf("inbox prefix %q, want the consumer's", o.InboxPrefix)
	}

	// They connect.
	s := natstest.Server(t)
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	nc.Close()
}

func TestNATSOptionsAuth(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := writeFile(t, "user.nk", string(seed)+"\n")
	credsFile := writeFile(t, "user.creds", "-----BEGIN NATS USER JWT-----\nnot-checked-here\n------END NATS USER JWT------\n")
	certFile, keyFile := selfSigned(t)

	t.Run("nkey", func(t *testing.T) {
		c := Default()
		c.NATS.NkeyFile = seedFile
		opts, err := c.NATSOptions(env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if o := apply(t, opts); o.Nkey != pub || o.SignatureCB == nil {
			t.Errorf("nkey = %q, want %q with a signature callback", o.Nkey, pub)
		}
	})
	t.Run("creds", func(t *testing.T) {
		c := Default()
		c.NATS.CredsFile = credsFile
		opts, err := c.NATSOptions(env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if o := apply(t, opts); o.UserJWT == nil || o.SignatureCB == nil {
			t.Error("user credentials callbacks not set")
		}
	})
	t.Run("user password", func(t *testing.T) {
		c := Default()
		c.NATS.User, c.NATS.PasswordEnv = "svc", "NATS_PW"
		opts, err := c.NATSOptions(env(map[string]string{"NATS_PW": "pw-secret-123"}))
		if err != nil {
			t.Fatal(err)
		}
		if o := apply(t, opts); o.User != "svc" || o.Password != "pw-secret-123" {
			t.Errorf("user/password = %q/%q", o.User, o.Password)
		}

		// Against a server that requires them.
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, Username: "svc", Password: "pw-secret-123"})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
		nc, err := nats.Connect(s.ClientURL(), opts...)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		nc.Close()
	})
	t.Run("tls", func(t *testing.T) {
		c := Default()
		c.NATS.TLS = TLSConfig{CAFile: certFile, CertFile: certFile, KeyFile: keyFile}
		opts, err := c.NATSOptions(env(nil))
		if err != nil {
			t.Fatal(err)
		}
		o := apply(t, opts)
		if !o.Secure || o.RootCAsCB == nil || o.TLSCertCB == nil || o.TLSConfig == nil || o.TLSConfig.InsecureSkipVerify {
			t.Errorf("TLS options = secure %v, roots %v, cert %v", o.Secure, o.RootCAsCB != nil, o.TLSCertCB != nil)
		}
	})
}

func TestNATSOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	garbage := writeFile(t, "garbage", "not a key or certificate")
	for _, tc := range []struct {
		name    string
		nats    NATSConfig
		env     map[string]string
		wantKey string
		wantIs  error
	}{
		{name: "creds missing", nats: NATSConfig{CredsFile: missing}, wantKey: "nats.creds_file", wantIs: fs.ErrNotExist},
		{name: "nkey missing", nats: NATSConfig{NkeyFile: missing}, wantKey: "nats.nkey_file", wantIs: fs.ErrNotExist},
		{name: "nkey garbage", nats: NATSConfig{NkeyFile: garbage}, wantKey: "nats.nkey_file", wantIs: ErrInvalidConfig},
		{name: "ca missing", nats: NATSConfig{TLS: TLSConfig{CAFile: missing}}, wantKey: "nats.tls.ca_file", wantIs: fs.ErrNotExist},
		{name: "ca garbage", nats: NATSConfig{TLS: TLSConfig{CAFile: garbage}}, wantKey: "nats.tls.ca_file", wantIs: ErrInvalidConfig},
		{name: "cert missing", nats: NATSConfig{TLS: TLSConfig{CertFile: missing, KeyFile: garbage}}, wantKey: "nats.tls.cert_file", wantIs: fs.ErrNotExist},
		{name: "key missing", nats: NATSConfig{TLS: TLSConfig{CertFile: garbage, KeyFile: missing}}, wantKey: "nats.tls.key_file", wantIs: fs.ErrNotExist},
		{name: "cert garbage", nats: NATSConfig{TLS: TLSConfig{CertFile: garbage, KeyFile: garbage}}, wantKey: "nats.tls.cert_file", wantIs: ErrInvalidConfig},
		{name: "password unset", nats: NATSConfig{User: "svc", PasswordEnv: "NATS_PW"}, wantKey: "nats.password_env", wantIs: ErrMissingSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.nats.Name = "x"
			c.NATS = tc.nats
			opts, err := c.NATSOptions(env(tc.env))
			if err == nil {
				t.Fatalf("NATSOptions = %d options, want an error", len(opts))
			}
			if !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want it to match %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantKey) {
				t.Errorf("error %q does not name %s", err, tc.wantKey)
			}
		})
	}
}
