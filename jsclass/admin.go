package jsclass

import (
	"context"
	"time"

	"github.com/strata-objects/strata/log"
)

// The gateway's ClassAdmin.

// DeployClass deploys source as the next version of class.
func (r *Registry) DeployClass(ctx context.Context, class, filename string, source []byte, export string, turnTimeout time.Duration, by string) (*log.ClassVersion, error) {
	return r.Deploy(ctx, DeployRequest{Class: class, Filename: filename, Source: source, Export: export, By: by, TurnTimeout: turnTimeout})
}

// RollbackClass is Rollback.
func (r *Registry) RollbackClass(ctx context.Context, class string, version uint64, by string) (*log.ClassVersion, error) {
	return r.Rollback(ctx, class, version, by)
}

// ClassNames lists the deployed classes.
func (r *Registry) ClassNames() []string { return r.cfg.Classes.Names() }

// ClassVersions lists a class's versions, oldest first.
func (r *Registry) ClassVersions(class string) []*log.ClassVersion {
	return r.cfg.Classes.Versions(class)
}
