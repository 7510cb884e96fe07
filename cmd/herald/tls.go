package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves a certificate from files and picks up renewed ones
// (certbot, cert-manager, ...) without a restart: at most once a second, a
// handshake checks whether the files changed and loads them again. A
// broken renewal keeps the last good certificate and logs why.
type certReloader struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu              sync.Mutex
	cert            *tls.Certificate
	certMod, keyMod time.Time
	checked         time.Time
}

// newCertReloader loads the certificate once; an error here stops serve.
func newCertReloader(certFile, keyFile string, logger *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, logger: logger}
	certMod, keyMod, err := c.modTimes()
	if err != nil {
		return nil, err
	}
	if err := c.load(certMod, keyMod); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) modTimes() (time.Time, time.Time, error) {
	ci, err := os.Stat(c.certFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--tls-cert: %w", err)
	}
	ki, err := os.Stat(c.keyFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--tls-key: %w", err)
	}
	return ci.ModTime(), ki.ModTime(), nil
}

func (c *certReloader) load(certMod, keyMod time.Time) error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("loading --tls-cert and --tls-key: %w", err)
	}
	c.cert, c.certMod, c.keyMod = &cert, certMod, keyMod
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= time.Second {
		c.checked = now
		certMod, keyMod, err := c.modTimes()
		switch {
		case err != nil:
			c.logger.Warn("TLS certificate files unreadable; keeping the loaded certificate", "error", err)
		case !certMod.Equal(c.certMod) || !keyMod.Equal(c.keyMod):
			if err := c.load(certMod, keyMod); err != nil {
				// Often a renewal caught half-written: retried next second.
				c.logger.Warn("renewed TLS certificate not loaded; keeping the previous one", "error", err)
			} else {
				c.logger.Info("TLS certificate reloaded", "cert", c.certFile)
			}
		}
	}
	return c.cert, nil
}

// tlsConfig is the server's TLS configuration: modern versions only, HTTP/2
// offered first (net/http enables it for ServeTLS).
func (c *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
