package projector

import (
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger sends Badger's warnings and errors to slog; its chatty info
// and debug lines are dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, args ...any) {
	b.l.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, args...)))
}
func (b badgerLogger) Warningf(f string, args ...any) {
	b.l.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, args...)))
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
