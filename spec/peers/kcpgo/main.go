// A kcp-go peer for the interoperability test (no encryption, no FEC: plain KCP segments).
//
//	kcpgo echo                  listens on 127.0.0.1, any port; prints "port N"; echoes every
//	                            byte of every conversation back
//	kcpgo send ADDR BYTES SEED  dials ADDR, sends BYTES pseudo-random bytes while reading as many
//	                            back, and prints "ok BYTES SHA256" when the echo matched
//
// Both set stream mode and kcptun's fast2 tuning, so that the segments on the wire are the ones a
// kcptun peer would send.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strconv"
	"time"

	kcp "github.com/xtaci/kcp-go"
)

func tune(s *kcp.UDPSession) {
	s.SetStreamMode(true)
	s.SetNoDelay(1, 20, 2, 1)
	s.SetWindowSize(1024, 1024)
	s.SetMtu(1400)
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: kcpgo echo | kcpgo send ADDR BYTES SEED")
	}
	switch os.Args[1] {
	case "echo":
		serve()
	case "send":
		if len(os.Args) != 5 {
			fail("usage: kcpgo send ADDR BYTES SEED")
		}
		n, _ := strconv.Atoi(os.Args[3])
		seed, _ := strconv.ParseInt(os.Args[4], 10, 64)
		send(os.Args[2], n, seed)
	default:
		fail("unknown mode %s", os.Args[1])
	}
}

func serve() {
	l, err := kcp.ListenWithOptions("127.0.0.1:0", nil, 0, 0)
	if err != nil {
		fail("listen: %v", err)
	}
	fmt.Printf("port %s\n", l.Addr().String()[len("127.0.0.1:"):])
	for {
		s, err := l.AcceptKCP()
		if err != nil {
			fail("accept: %v", err)
		}
		tune(s)
		go func() {
			defer s.Close()
			io.Copy(s, s)
		}()
	}
}

func send(addr string, n int, seed int64) {
	data := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(data)
	s, err := kcp.DialWithOptions(addr, nil, 0, 0)
	if err != nil {
		fail("dial: %v", err)
	}
	tune(s)
	s.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		if _, err := s.Write(data); err != nil {
			fail("write: %v", err)
		}
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(s, got); err != nil {
		fail("read: %v", err)
	}
	if !bytes.Equal(got, data) {
		fail("the echo differs")
	}
	sum := sha256.Sum256(got)
	fmt.Printf("ok %d %s\n", n, hex.EncodeToString(sum[:]))
}
