package ingest

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/syncguard/syncguard/schemas"
)

// defaultReadHint is the first buffer size for a body of unknown length.
const defaultReadHint = 16 << 10

// Content codings of a request body.
const (
	codingIdentity = iota
	codingGzip
	codingUnsupported
)

// parseContentEncoding returns the coding of a body from its
// Content-Encoding header lines. Only no coding, "identity" and a single
// layer of "gzip" (or its alias "x-gzip") are supported: stacked codings
// are rejected rather than decompressed layer after layer.
func parseContentEncoding(values []string) int {
	coding := codingIdentity
	for _, line := range values {
		for part := range strings.SplitSeq(line, ",") {
			switch strings.ToLower(strings.TrimSpace(part)) {
			case "", "identity":
			case "gzip", "x-gzip":
				if coding == codingGzip {
					return codingUnsupported
				}
				coding = codingGzip
			default:
				return codingUnsupported
			}
		}
	}
	return coding
}

// readLimited reads r to the end. It returns errBodyTooLarge when r is an
// http.MaxBytesReader whose limit was passed. sizeHint, when not negative, is
// the expected length (the Content-Length); a negative sizeHint means
// unknown. At most defaultReadHint bytes are allocated before any arrive,
// so that a client that declares a large Content-Length and then stalls
// holds little memory. The buffer then doubles, up to sizeHint.
func readLimited(r io.Reader, sizeHint int64) ([]byte, error) {
	if sizeHint < 0 || sizeHint > 64<<20 {
		sizeHint = defaultReadHint
	}
	// One spare byte lets the final read see io.EOF without growing, and
	// it is all that an empty body (sizeHint 0) needs.
	b := make([]byte, 0, min(sizeHint, defaultReadHint)+1)
	for {
		if len(b) == cap(b) {
			next := 2 * len(b)
			if int64(len(b)) < sizeHint {
				next = int(min(int64(next), sizeHint+1))
			}
			b = append(make([]byte, 0, next), b...)
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		switch {
		case err == io.EOF:
			return b, nil
		case err != nil:
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, errBodyTooLarge
			}
			return nil, err
		}
	}
}

var gzipReaders sync.Pool

// gunzipLimited decompresses a gzip stream, with any number of members,
// and returns errBodyTooLarge as soon as the output passes limit bytes, so
// a small body that inflates to gigabytes costs at most limit+1 bytes of
// memory. A stream that is not valid gzip returns errBadGzip.
func gunzipLimited(r io.Reader, limit int64) ([]byte, error) {
	var zr *gzip.Reader
	if v := gzipReaders.Get(); v != nil {
		zr = v.(*gzip.Reader)
		if err := zr.Reset(r); err != nil {
			gzipReaders.Put(zr)
			return nil, wrapGzipErr(err)
		}
	} else {
		var err error
		if zr, err = gzip.NewReader(r); err != nil {
			return nil, wrapGzipErr(err)
		}
	}
	defer gzipReaders.Put(zr)

	out, err := readLimited(io.LimitReader(zr, limit+1), -1)
	if err != nil {
		return nil, wrapGzipErr(err)
	}
	if int64(len(out)) > limit {
		return nil, errBodyTooLarge
	}
	return out, nil
}

// wrapGzipErr keeps errBodyTooLarge, which the raw body's limit raises
// through the gzip reader, and turns every other error into errBadGzip.
func wrapGzipErr(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.Is(err, errBodyTooLarge) || errors.As(err, &tooLarge) {
		return errBodyTooLarge
	}
	return errBadGzip
}

// failBodyRead responds to a request whose body could not be read. A body
// that did not arrive within read_timeout gets 408 request_timeout;
// net/http then closes an HTTP/1 connection, whose unread body it cannot
// skip. Validate keeps write_timeout longer than read_timeout, so that
// this response can still be written. Any other failure gets 400
// invalid_request, which the client mostly never reads because it went
// away.
func (s *Server) failBodyRead(x *exchange, err error) {
	x.detail = bodyReadDetail(err)
	code, detail := schemas.ReasonInvalidRequest, "the request body could not be read"
	if isTimeout(err) {
		code, detail = schemas.ReasonRequestTimeout, "the body did not arrive within "+s.cfg.ReadTimeout.String()
	}
	s.fail(x, code, detail)
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
}

// bodyReadDetail describes a failed body read for the audit detail. It
// names the kind of failure instead of quoting the error, whose text can
// carry an HTTP/2 stream id or an address and so would make every
// detail distinct.
func bodyReadDetail(err error) string {
	switch {
	case isTimeout(err):
		return "reading body: timed out"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "reading body: the client closed the body early"
	case errors.Is(err, context.Canceled):
		return "reading body: the client went away"
	default:
		// The type name is from a small set, unlike the message.
		return fmt.Sprintf("reading body: failed (%T)", err)
	}
}
