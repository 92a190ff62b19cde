package sinks

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// checkpointVersion starts every canonical checkpoint encoding, so that
// checkpoint bytes can never equal the bytes of an audit row or of a later
// encoding.
const checkpointVersion = "syncguard.audit_checkpoint.v1"

// checkpoint is one audit_checkpoints row: the partition, offset and stored
// hash of an audit_log row, signed with the keyring's checkpoint key.
type checkpoint struct {
	Partition int32
	Offset    int64
	Hash      string // hex, 64 characters, as audit_log stores it
	SignedAt  uint32 // DateTime: Unix seconds
	Signature string // hex of the Ed25519 signature
	KeyID     string
}

// checkpointMessage is the canonical encoding that a checkpoint signature
// covers. Each field is a 4-byte big-endian length followed by its bytes,
// and numbers are 8-byte big-endian, as in canonicalAuditRow. The database
// name is included so that checkpoints copied from another database do not
// verify. Changing the encoding breaks the verification of every stored
// checkpoint.
func checkpointMessage(database string, partition int32, offset int64, hash string, signedAt uint32) []byte {
	b := make([]byte, 0, 160)
	field := func(p []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	u64 := func(v uint64) { field(binary.BigEndian.AppendUint64(nil, v)) }

	field([]byte(checkpointVersion))
	field([]byte(database))
	u64(uint64(int64(partition)))
	u64(uint64(offset))
	field([]byte(hash))
	u64(uint64(signedAt))
	return b
}

// CheckpointSigner signs checkpoint messages; *keys.Keyring implements it.
type CheckpointSigner interface {
	SignCheckpoint(msg []byte) (keyID string, sig []byte, err error)
}

// CheckpointVerifier checks checkpoint signatures; *keys.Keyring and
// *keys.PublicKeys implement it.
type CheckpointVerifier interface {
	VerifyCheckpoint(keyID string, msg, sig []byte) bool
}

// signCheckpoint returns the signed checkpoint of the row at offset of
// partition whose stored hash is hash.
func signCheckpoint(signer CheckpointSigner, database string, partition int32, offset int64, hash string, now time.Time) (checkpoint, error) {
	sec, _ := splitTime(now)
	keyID, sig, err := signer.SignCheckpoint(checkpointMessage(database, partition, offset, hash, sec))
	if err != nil {
		return checkpoint{}, fmt.Errorf("sign checkpoint of audit partition %d offset %d: %w", partition, offset, err)
	}
	return checkpoint{
		Partition: partition,
		Offset:    offset,
		Hash:      hash,
		SignedAt:  sec,
		Signature: hex.EncodeToString(sig),
		KeyID:     keyID,
	}, nil
}

// validSignature reports whether verifier accepts the checkpoint's signature
// for database.
func (c *checkpoint) validSignature(verifier CheckpointVerifier, database string) bool {
	sig, err := hex.DecodeString(c.Signature)
	if err != nil {
		return false
	}
	return verifier.VerifyCheckpoint(c.KeyID, checkpointMessage(database, c.Partition, c.Offset, c.Hash, c.SignedAt), sig)
}

const checkpointColumns = "kafka_partition, kafka_offset, hash, signed_at, signature, key_id"

// insertCheckpoints writes cps in one INSERT. Writing the same checkpoint
// twice, as a retry or a resumed writer may, is harmless: the verifier
// checks every copy on its own.
func insertCheckpoints(ctx context.Context, conn driver.Conn, database string, cps []checkpoint) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+database+".audit_checkpoints ("+checkpointColumns+")")
	if err != nil {
		return &InsertError{Table: "audit_checkpoints", Rows: len(cps), Err: err}
	}
	// Close does nothing after Send. On an early return it ends the INSERT
	// without the buffered rows, and the function returns the Append error.
	defer func() { _ = batch.Close() }()
	for _, c := range cps {
		if err := batch.Append(c.Partition, c.Offset, c.Hash, time.Unix(int64(c.SignedAt), 0).UTC(), c.Signature, c.KeyID); err != nil {
			return &InsertError{Table: "audit_checkpoints", Rows: len(cps), Err: err}
		}
	}
	if err := batch.Send(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &InsertError{Table: "audit_checkpoints", Rows: len(cps), Err: err}
	}
	return nil
}

func scanCheckpoint(rows driver.Rows, c *checkpoint) error {
	var t time.Time
	if err := rows.Scan(&c.Partition, &c.Offset, &c.Hash, &t, &c.Signature, &c.KeyID); err != nil {
		return err
	}
	c.SignedAt = uint32(t.Unix())
	return nil
}
