// Opens a cosigned checkpoint with golang.org/x/mod/sumdb/note, the note implementation of the Go
// checksum database: the log's Ed25519 signature with note.NewVerifier, and witness cosignatures
// (C2SP tlog-cosignature, type 0x04, which this version of x/mod does not know) with a note.Verifier
// written here from the specification, so note.Open still does the parsing and key matching.
//
// Input: a JSON file {"note": "...", "logVkeys": [...], "witnessVkeys": [...]} (argument 1).
// Output: JSON {"ok": true, "verified": [{"name", "keyHash"}], "unverified": [...]} or {"ok": false, "error"}.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type cosignatureV1 struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosignatureV1) Name() string    { return v.name }
func (v *cosignatureV1) KeyHash() uint32 { return v.hash }

// Verify checks timestamp || Ed25519 signature over "cosignature/v1\ntime <t>\n" || note text.
func (v *cosignatureV1) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > math.MaxInt64 {
		return false
	}
	signed := append([]byte("cosignature/v1\ntime "+strconv.FormatUint(t, 10)+"\n"), msg...)
	return ed25519.Verify(v.key, signed, sig[8:])
}

// newCosignatureV1 parses "<name>+<hex key id>+base64(0x04 || key)", key id = SHA-256(name || "\n" || 0x04 || key)[:4].
func newCosignatureV1(vkey string) (*cosignatureV1, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("malformed witness vkey")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x04 {
		return nil, errors.New("not a cosignature/v1 (type 0x04) Ed25519 key")
	}
	h := sha256.New()
	h.Write([]byte(parts[0] + "\n"))
	h.Write(raw)
	hash := binary.BigEndian.Uint32(h.Sum(nil)[:4])
	id, err := hex.DecodeString(parts[1])
	if err != nil || len(id) != 4 || binary.BigEndian.Uint32(id) != hash {
		return nil, errors.New("witness vkey id does not match its name and key")
	}
	return &cosignatureV1{name: parts[0], hash: hash, key: ed25519.PublicKey(raw[1:])}, nil
}

type input struct {
	Note         string   `json:"note"`
	LogVkeys     []string `json:"logVkeys"`
	WitnessVkeys []string `json:"witnessVkeys"`
}

type sig struct {
	Name    string `json:"name"`
	KeyHash string `json:"keyHash"`
}

func fail(err error) {
	out, _ := json.Marshal(map[string]any{"ok": false, "error": err.Error()})
	fmt.Println(string(out))
	os.Exit(0)
}

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	var in input
	if err := json.Unmarshal(data, &in); err != nil {
		fail(err)
	}
	var vs []note.Verifier
	for _, k := range in.LogVkeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			fail(fmt.Errorf("note.NewVerifier(%q): %w", k, err))
		}
		vs = append(vs, v)
	}
	for _, k := range in.WitnessVkeys {
		v, err := newCosignatureV1(k)
		if err != nil {
			fail(err)
		}
		vs = append(vs, v)
	}
	n, err := note.Open([]byte(in.Note), note.VerifierList(vs...))
	if err != nil {
		fail(err)
	}
	list := func(ss []note.Signature) []sig {
		out := []sig{}
		for _, s := range ss {
			out = append(out, sig{Name: s.Name, KeyHash: fmt.Sprintf("%08x", s.Hash)})
		}
		return out
	}
	out, _ := json.Marshal(map[string]any{"ok": true, "text": n.Text, "verified": list(n.Sigs), "unverified": list(n.UnverifiedSigs)})
	fmt.Println(string(out))
}
