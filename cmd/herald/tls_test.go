package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a fresh self-signed certificate for 127.0.0.1 with the
// given serial to certFile and keyFile, dated mod, and returns it.
func writeCert(t *testing.T, certFile, keyFile string, serial int64, mod time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "herald test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(file, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// serve --tls-cert/--tls-key: streams and publishes over HTTPS with
// HTTP/2, and a renewed certificate is picked up without a restart.
func TestServeTLSAndCertificateReload(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1, time.Now().Add(-time.Minute))
	s := startServe(t, "--addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(s.base, "https://") {
		t.Fatalf("serve prints %q, want an https address", s.base)
	}

	pool := x509.NewCertPool()
	pool.AddCert(first)
	client := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}}
	resp, err := client.Get(s.base + "/events?topic=tls")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream over %s with Content-Type %q, want HTTP/2 event stream", resp.Proto, resp.Header.Get("Content-Type"))
	}
	pub, err := client.PostForm(s.base+"/publish", url.Values{"topic": {"tls"}, "data": {"secret hello"}})
	if err != nil {
		t.Fatal(err)
	}
	pub.Body.Close()
	if m, err := streamDecoder(t, resp.Body).Next(); err != nil || m.Data != "secret hello" {
		t.Fatalf("event over TLS: %+v, %v", m, err)
	}

	// Renew the files; new handshakes present the new certificate.
	writeCert(t, certFile, keyFile, 2, time.Now().Add(time.Minute))
	deadline := time.Now().Add(waitTimeout)
	for {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.base, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
		conn.Close()
		if serial == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving certificate %d after renewal", serial)
		}
		time.Sleep(100 * time.Millisecond) // the reload check runs at most once a second: polling
	}
	if !strings.Contains(s.stderr.String(), "TLS certificate reloaded") {
		t.Error("reload not logged")
	}
}

// --cors-origins reaches the API: an allowed origin's preflight is
// answered, another origin's stream is refused.
func TestServeCORSOrigins(t *testing.T) {
	s := startServe(t, "--addr", "127.0.0.1:0", "--cors-origins", "https://app.example, https://*.example.org")
	req, _ := http.NewRequest(http.MethodOptions, s.base+"/events?topic=a", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err := freshConns.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("preflight: %d, %v", resp.StatusCode, resp.Header)
	}
	req, _ = http.NewRequest(http.MethodGet, s.base+"/events?topic=a", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err = freshConns.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("stream from a disallowed origin: %d, want 403", resp.StatusCode)
	}
}
