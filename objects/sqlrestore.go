package objects

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/sqlstore"
)

// restoreTables sets the turn's SQL database back to past (the tables,
// indexes and views of an earlier version) through ordinary statements,
// so the restore's event records the row and schema changes like any
// turn: an index or view that is not the past's is dropped; a table whose
// schema changed (or that is gone) is dropped and created again with its
// rows; in a table whose schema is the same only the rows that differ
// change; then the past's indexes and views that are missing are created,
// in their creation order. It returns how many statements it ran.
func restoreTables(sql *SQL, pastState history.State) (int, error) {
	past := pastState.Tables
	db, err := sql.t.sqlBegin()
	if err != nil {
		return 0, err
	}
	ctx := sql.t.req.ctx
	now, err := db.Dump(ctx)
	if err != nil {
		return 0, err
	}
	nowObjs, err := db.Objects(ctx)
	if err != nil {
		return 0, err
	}
	if len(now) == 0 && len(past) == 0 && len(nowObjs) == 0 && len(pastState.Objects) == 0 {
		return 0, nil
	}
	cur := map[string]sqlstore.Table{}
	for _, t := range now {
		cur[t.Name] = t
	}
	want := map[string]bool{}
	for _, t := range past {
		want[t.Name] = true
	}
	changed := 0
	exec := func(q string, args ...any) error {
		_, err := sql.Exec(q, args...)
		if err != nil {
			return fmt.Errorf("restore: %s: %w", truncate(q), err)
		}
		changed++
		return nil
	}
	pastObjs := map[string]sqlstore.Object{}
	for _, o := range pastState.Objects {
		pastObjs[o.Name] = o
	}
	for _, o := range nowObjs {
		if pastObjs[o.Name] != o {
			if err := exec("DROP " + strings.ToUpper(o.Type) + " " + sqlstore.Quote(o.Name)); err != nil {
				return 0, err
			}
		}
	}
	for _, t := range now {
		if !want[t.Name] {
			if err := exec("DROP TABLE " + sqlstore.Quote(t.Name)); err != nil {
				return 0, err
			}
		}
	}
	for _, p := range past {
		c, ok := cur[p.Name]
		if ok && c.Schema != p.Schema {
			if err := exec("DROP TABLE " + sqlstore.Quote(p.Name)); err != nil {
				return 0, err
			}
			ok = false
		}
		if !ok {
			if err := exec(p.Schema); err != nil {
				return 0, err
			}
			c = sqlstore.Table{}
		}
		have := map[int64][]any{}
		for i, id := range c.RowIDs {
			have[id] = c.Rows[i]
		}
		keep := map[int64]bool{}
		cols := make([]string, len(p.Columns))
		for i, n := range p.Columns {
			cols[i] = sqlstore.Quote(n)
		}
		for i, id := range p.RowIDs {
			keep[id] = true
			row := p.Rows[i]
			old, exists := have[id]
			switch {
			case exists && reflect.DeepEqual(old, row):
			case exists:
				set := make([]string, len(cols))
				for j, n := range cols {
					set[j] = n + "=?"
				}
				if err := exec(fmt.Sprintf("UPDATE %s SET %s WHERE rowid=?", sqlstore.Quote(p.Name), strings.Join(set, ", ")), append(append([]any{}, row...), id)...); err != nil {
					return 0, err
				}
			default:
				q := fmt.Sprintf("INSERT INTO %s(rowid, %s) VALUES(?%s)", sqlstore.Quote(p.Name), strings.Join(cols, ", "), strings.Repeat(", ?", len(cols)))
				if err := exec(q, append([]any{id}, row...)...); err != nil {
					return 0, err
				}
			}
		}
		for _, id := range c.RowIDs {
			if !keep[id] {
				if err := exec("DELETE FROM "+sqlstore.Quote(p.Name)+" WHERE rowid=?", id); err != nil {
					return 0, err
				}
			}
		}
	}
	// Dropped tables took their indexes: list what is left.
	if nowObjs, err = db.Objects(ctx); err != nil {
		return 0, err
	}
	have := map[string]bool{}
	for _, o := range nowObjs {
		have[o.Name] = true
	}
	for _, o := range pastState.Objects {
		if !have[o.Name] {
			if err := exec(o.SQL); err != nil {
				return 0, err
			}
		}
	}
	return changed, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
