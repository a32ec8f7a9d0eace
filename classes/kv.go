package classes

import (
	"encoding/json"
	"sort"

	"github.com/strata-objects/strata/objects"
)

// kv is a generic object store for any language over HTTP: each object is a
// sorted map from string keys to JSON values.
type kv struct{}

// KV is the "kv" class: get, get-many, put, put-many, delete, delete-many,
// list, delete-all.
func KV() *objects.Class {
	return objects.Define("kv", func() *kv { return &kv{} })
}

type (
	KeyInput struct {
		Key string `json:"key"`
	}
	KeysInput struct {
		Keys []string `json:"keys"`
	}
	Entry struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	GetOutput struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
		Found bool            `json:"found"`
	}
	PutManyInput struct {
		Entries []Entry `json:"entries"`
	}
	ListInput struct {
		Prefix  string `json:"prefix"`
		Start   string `json:"start"`
		End     string `json:"end"`
		Reverse bool   `json:"reverse"`
		Limit   int    `json:"limit"`
	}
	EntriesOutput struct {
		Entries []Entry `json:"entries"`
	}
	CountOutput struct {
		Count int `json:"count"`
	}
	DeletedOutput struct {
		Deleted bool `json:"deleted"`
	}
)

func (k *kv) Get(ctx *objects.Ctx, in KeyInput) (GetOutput, error) {
	v, ok, err := ctx.Storage().Get(in.Key)
	if err != nil {
		return GetOutput{}, err
	}
	out := GetOutput{Key: in.Key, Found: ok, Value: json.RawMessage("null")}
	if ok {
		out.Value = v
	}
	return out, nil
}

func (k *kv) GetMany(ctx *objects.Ctx, in KeysInput) (EntriesOutput, error) {
	m, err := ctx.Storage().GetMany(in.Keys)
	if err != nil {
		return EntriesOutput{}, err
	}
	out := EntriesOutput{Entries: []Entry{}}
	for key, v := range m {
		out.Entries = append(out.Entries, Entry{key, v})
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].Key < out.Entries[j].Key })
	return out, nil
}

func (k *kv) Put(ctx *objects.Ctx, in Entry) (CountOutput, error) {
	if len(in.Value) == 0 {
		return CountOutput{}, objects.Errorf(400, "bad_input", "put needs a value")
	}
	return CountOutput{Count: 1}, ctx.Storage().Put(in.Key, in.Value)
}

func (k *kv) PutMany(ctx *objects.Ctx, in PutManyInput) (CountOutput, error) {
	m := make(map[string][]byte, len(in.Entries))
	for _, e := range in.Entries {
		if len(e.Value) == 0 {
			return CountOutput{}, objects.Errorf(400, "bad_input", "put-many: key %q needs a value", e.Key)
		}
		m[e.Key] = e.Value
	}
	return CountOutput{Count: len(m)}, ctx.Storage().PutMany(m)
}

func (k *kv) Delete(ctx *objects.Ctx, in KeyInput) (DeletedOutput, error) {
	existed, err := ctx.Storage().Delete(in.Key)
	return DeletedOutput{Deleted: existed}, err
}

func (k *kv) DeleteMany(ctx *objects.Ctx, in KeysInput) (CountOutput, error) {
	n, err := ctx.Storage().DeleteMany(in.Keys)
	return CountOutput{Count: n}, err
}

func (k *kv) List(ctx *objects.Ctx, in ListInput) (EntriesOutput, error) {
	kvs, err := ctx.Storage().List(objects.ListOptions{
		Prefix: in.Prefix, Start: in.Start, End: in.End, Reverse: in.Reverse, Limit: in.Limit,
	})
	if err != nil {
		return EntriesOutput{}, err
	}
	out := EntriesOutput{Entries: make([]Entry, len(kvs))}
	for i, e := range kvs {
		out.Entries[i] = Entry{e.Key, e.Value}
	}
	return out, nil
}

func (k *kv) DeleteAll(ctx *objects.Ctx) (struct{}, error) {
	return struct{}{}, ctx.Storage().DeleteAll()
}
