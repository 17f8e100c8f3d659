package consumer

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/console"
	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/readmodel"
)

// followPause is how long the console's read model waits before reading
// the streams again after they could not be read.
const followPause = 5 * time.Second

// startConsole serves the console (config.ConsoleConfig) until ctx ends
// or stop: its read model follows the streams, its operators' orders go
// to the control service.
func (c *Consumer) startConsole(ctx context.Context, orders *control.Service) (stop func(), err error) {
	cc := c.cfg.Console
	if cc.Store == "" {
		cc.Store = filepath.Join(c.cfg.Embedded.StoreDir, "console.db")
	}
	if err := os.MkdirAll(filepath.Dir(cc.Store), 0o750); err != nil {
		return nil, fmt.Errorf("console store: %w", err)
	}
	model, err := readmodel.Open(ctx, cc.Store, c.Subjects)
	if err != nil {
		return nil, err
	}
	users := make([]console.User, 0, len(cc.Users))
	for _, u := range cc.Users {
		users = append(users, console.User{Name: u.Name, Role: u.Role, PasswordHash: u.PasswordHash})
	}
	srv, err := console.New(console.Config{Model: model, JS: c.JS, Ledger: c.Ledger, Subjects: c.Subjects, Orders: orders, Users: users,
		TrustedHeader: cc.TrustedHeader, Session: cc.Session, SecureCookies: cc.SecureCookies, Log: c.log})
	if err != nil {
		model.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cc.Listen)
	if err != nil {
		model.Close()
		return nil, fmt.Errorf("console listener %s: %w", cc.Listen, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if err := model.Follow(ctx, c.JS); err != nil {
				c.log.Warn("console: the read model could not read the streams; trying again", zap.Error(err), zap.Duration("in", followPause))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(followPause):
			}
		}
	})
	wg.Go(func() {
		if err := console.Serve(ctx, ln, srv.Handler()); err != nil {
			c.log.Error("console: serving stopped", zap.Error(err))
		}
	})
	url := "http://" + ln.Addr().String()
	c.log.Info("console ready", zap.String("url", url), zap.String("store", cc.Store), zap.Int("users", len(users)))
	if c.deps.ConsoleLink {
		c.log.Info("console: sign in once, as the sandbox's operator, at this link", zap.String("url", url+srv.OneTimeLink(console.User{Name: "sandbox", Role: console.RoleOperator})))
	}
	return func() {
		cancel()
		wg.Wait()
		model.Close()
	}, nil
}
