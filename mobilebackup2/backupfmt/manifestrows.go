package backupfmt

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
)

// RawRow is one Files row of Manifest.db with its file blob undecoded
// (format §5.5). Its byte slices are valid only until the next Rows.Next.
type RawRow struct {
	FileID, Domain, RelativePath []byte
	Flags                        int64
	// Null flags which columns were NULL (bit 0 fileID … bit 4 file).
	Null uint8
	File []byte
}

// Equal reports whether two rows are byte for byte the same.
func (r *RawRow) Equal(o *RawRow) bool {
	return r.Null == o.Null && r.Flags == o.Flags && bytes.Equal(r.FileID, o.FileID) &&
		bytes.Equal(r.Domain, o.Domain) && bytes.Equal(r.RelativePath, o.RelativePath) && bytes.Equal(r.File, o.File)
}

// Type returns Flags&FlagsTypeMask.
func (r *RawRow) Type() int { return int(r.Flags) & FlagsTypeMask }

// Decode converts the row to a Record, decoding its file blob (a bad blob
// goes to Record.FileErr, as for Each).
func (r *RawRow) Decode() Record {
	rec := Record{FileID: string(r.FileID), Domain: string(r.Domain), RelativePath: string(r.RelativePath), Flags: int(r.Flags)}
	if r.Null&(1<<4) != 0 {
		rec.FileErr = fmt.Errorf("%w: row %s has no file blob", ErrMalformed, rec.FileID)
	} else if f, err := DecodeMBFile(r.File); err != nil {
		rec.FileErr = err
	} else {
		rec.File = f
	}
	return rec
}

// Rows iterates Files rows ordered by fileID (the primary key index), so
// they can be merge-joined with other sorted streams (issue 11). Not safe
// for concurrent use.
type Rows struct {
	rows *sql.Rows
	cur  RawRow
	err  error
}

// RowsByFileID starts an ordered walk of the Files table.
func (m *ManifestDB) RowsByFileID(ctx context.Context) (*Rows, error) {
	rows, err := m.db.QueryContext(ctx, selectFiles+` ORDER BY fileID`)
	if err != nil {
		return nil, fmt.Errorf("backupfmt: Manifest.db query: %w", err)
	}
	return &Rows{rows: rows}, nil
}

// Next advances to the next row; false at the end or on an error (Err).
func (r *Rows) Next() bool {
	if r.err != nil || !r.rows.Next() {
		return false
	}
	var (
		id, dom, rel, file sql.RawBytes
		flags              sql.NullInt64
	)
	if err := r.rows.Scan(&id, &dom, &rel, &flags, &file); err != nil {
		r.err = fmt.Errorf("backupfmt: Manifest.db row: %w", err)
		return false
	}
	var null uint8
	for i, b := range [][]byte{id, dom, rel, nil, file} {
		if b == nil && i != 3 {
			null |= 1 << i
		}
	}
	if !flags.Valid {
		null |= 1 << 3
	}
	r.cur = RawRow{FileID: id, Domain: dom, RelativePath: rel, Flags: flags.Int64, Null: null, File: file}
	return true
}

// Row returns the current row (valid until the next Next).
func (r *Rows) Row() *RawRow { return &r.cur }

// Err returns the error that ended the walk, if any.
func (r *Rows) Err() error {
	if r.err != nil {
		return r.err
	}
	if err := r.rows.Err(); err != nil {
		return fmt.Errorf("backupfmt: Manifest.db rows: %w", err)
	}
	return nil
}

// Close ends the walk.
func (r *Rows) Close() error { return r.rows.Close() }

// EachByFileID is Each in fileID order.
func (m *ManifestDB) EachByFileID(fn func(Record) error) error {
	rows, err := m.RowsByFileID(context.Background())
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Row().Decode()); err != nil {
			return err
		}
	}
	return rows.Err()
}
