// fecpeer is the kcp-go side of kcp-rs's FEC interop test
// (tests/fec_interop_kcpgo.rs): a kcp-go 5.6 echo server or client with
// Reed-Solomon FEC and no encryption over UDP.
//
//	fecpeer server -addr 127.0.0.1:0 -ds 10 -ps 3
//	    prints "LISTEN <addr>", echoes every message of every session, and
//	    prints "SESSION_END <stats>" when a session has been idle for 3 s.
//	fecpeer client -addr 127.0.0.1:PORT -n 200 -ds 10 -ps 3
//	    sends n messages of sizes 1..4000, reads the echo, compares the byte
//	    streams and prints "OK <bytes> <stats>", or exits 1.
//
// Both exit by themselves after -timeout, and when stdin reaches EOF (the
// test closes it or dies), so a failed test never leaves one running.
//
// Build in GOPATH mode against Debian's golang-github-xtaci-kcp-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o fecpeer .
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	kcp "github.com/xtaci/kcp-go"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fecpeer server|client [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen (server) or dial (client) address")
	ds := fs.Int("ds", 10, "FEC data shards")
	ps := fs.Int("ps", 3, "FEC parity shards")
	n := fs.Int("n", 200, "messages to send (client)")
	timeout := fs.Duration("timeout", 60*time.Second, "exit after this long")
	fs.Parse(os.Args[2:])

	// Never outlive the test: a hard deadline, and stdin EOF.
	time.AfterFunc(*timeout, func() {
		fmt.Println("TIMEOUT")
		os.Exit(3)
	})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(4)
	}()

	switch mode {
	case "server":
		server(*addr, *ds, *ps)
	case "client":
		os.Exit(client(*addr, *ds, *ps, *n))
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(2)
	}
}

// tune applies the settings the Rust side mirrors: ikcp fast mode with a
// 10 ms interval, 128-segment windows, message mode, default MTU 1400.
func tune(s *kcp.UDPSession) {
	s.SetNoDelay(1, 10, 2, 1)
	s.SetWindowSize(128, 128)
	s.SetStreamMode(false)
	s.SetACKNoDelay(false)
}

func stats() string {
	snmp := kcp.DefaultSnmp.Copy()
	return fmt.Sprintf("recovered=%d fec_errs=%d parity_in=%d short=%d kcp_in_errs=%d retrans=%d",
		snmp.FECRecovered, snmp.FECErrs, snmp.FECParityShards, snmp.FECShortShards,
		snmp.KCPInErrors, snmp.RetransSegs)
}

func server(addr string, ds, ps int) {
	l, err := kcp.ListenWithOptions(addr, nil, ds, ps)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Println("LISTEN", l.Addr().String())
	for {
		s, err := l.AcceptKCP()
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			os.Exit(1)
		}
		tune(s)
		go echo(s)
	}
}

func echo(s *kcp.UDPSession) {
	defer s.Close()
	buf := make([]byte, 65536)
	for {
		s.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := s.Read(buf)
		if err != nil {
			fmt.Println("SESSION_END", stats())
			return
		}
		if _, err := s.Write(buf[:n]); err != nil {
			fmt.Println("SESSION_END write error", err, stats())
			return
		}
	}
}

// message i of the deterministic test stream, the same as the Rust side's.
func message(i int) []byte {
	size := 1 + (i*397)%4000
	m := make([]byte, size)
	for j := range m {
		m[j] = byte((i*31 + j) % 251)
	}
	return m
}

func client(addr string, ds, ps, n int) int {
	s, err := kcp.DialWithOptions(addr, nil, ds, ps)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 1
	}
	defer s.Close()
	tune(s)

	var sent bytes.Buffer
	for i := 0; i < n; i++ {
		sent.Write(message(i))
	}
	go func() {
		for i := 0; i < n; i++ {
			if _, err := s.Write(message(i)); err != nil {
				fmt.Fprintln(os.Stderr, "write:", err)
				return
			}
		}
	}()

	got := make([]byte, 0, sent.Len())
	buf := make([]byte, 65536)
	s.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(got) < sent.Len() {
		k, err := s.Read(buf)
		if err != nil {
			fmt.Printf("FAIL read after %d of %d bytes: %v %s\n", len(got), sent.Len(), err, stats())
			return 1
		}
		got = append(got, buf[:k]...)
	}
	if !bytes.Equal(got, sent.Bytes()) {
		fmt.Printf("FAIL echo differs (%d bytes) %s\n", len(got), stats())
		return 1
	}
	fmt.Printf("OK %d %s\n", len(got), stats())
	return 0
}
