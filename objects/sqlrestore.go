package objects

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/strata-objects/strata/sqlstore"
)

// restoreTables sets the turn's SQL tables back to past (a dump of an
// earlier version) through ordinary statements, so the restore's event
// records the row changes like any turn: a table whose schema changed (or
// that is gone) is dropped and created again with its rows; in a table
// whose schema is the same only the rows that differ change. Indexes and
// views are not restored (a limit of this first version). It returns how
// many rows it changed.
func restoreTables(sql *SQL, past []sqlstore.Table) (int, error) {
	db, err := sql.t.sqlBegin()
	if err != nil {
		return 0, err
	}
	now, err := db.Dump(sql.t.req.ctx)
	if err != nil {
		return 0, err
	}
	if len(now) == 0 && len(past) == 0 {
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
	return changed, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
