package jsclass

import (
	"time"

	"github.com/strata-objects/strata/objects"
)

// store is what a class's storage API runs on: the turn's objects.Storage
// when serving, a scratch copy of recorded state during replay.
type store interface {
	Get(key string) ([]byte, bool, error)
	Put(key string, value []byte) error
	Delete(key string) (bool, error)
	DeleteAll() error
	List(opts objects.ListOptions) ([]objects.KV, error)
	GetAlarm() (time.Time, bool, error)
	SetAlarm(at time.Time) error
	DeleteAlarm() (bool, error)
	Begin() (store, error)
	Commit(tx store) error
	Rollback(tx store) error
}

// liveStore is a turn's storage.
type liveStore struct{ s *objects.Storage }

func (l liveStore) Get(k string) ([]byte, bool, error)               { return l.s.Get(k) }
func (l liveStore) Put(k string, v []byte) error                     { return l.s.Put(k, v) }
func (l liveStore) Delete(k string) (bool, error)                    { return l.s.Delete(k) }
func (l liveStore) DeleteAll() error                                 { return l.s.DeleteAll() }
func (l liveStore) List(o objects.ListOptions) ([]objects.KV, error) { return l.s.List(o) }
func (l liveStore) GetAlarm() (time.Time, bool, error)               { return l.s.GetAlarm() }
func (l liveStore) SetAlarm(at time.Time) error                      { return l.s.SetAlarm(at) }
func (l liveStore) DeleteAlarm() (bool, error)                       { return l.s.DeleteAlarm() }
func (l liveStore) Begin() (store, error) {
	tx, err := l.s.Begin()
	if err != nil {
		return nil, err
	}
	return liveStore{tx}, nil
}
func (l liveStore) Commit(tx store) error   { return l.s.Commit(tx.(liveStore).s) }
func (l liveStore) Rollback(tx store) error { return l.s.Rollback(tx.(liveStore).s) }
