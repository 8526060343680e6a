package control

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

// The status page: HTML, script and style built into the binary, so a site
// serves it with no network beyond its own control address. The script polls
// /v1/history and /v1/status and draws its charts on a canvas itself.
//
//go:embed page
var pageFiles embed.FS

// Site names one site of the session, as the config gives it, so the status
// page at either site shows both and links to the other's.
type Site struct {
	Role    string `json:"role"` // "primary" | "secondary"
	Control string `json:"control,omitempty"`
	// TLS: the control address is HTTPS; ServerName is the name its
	// certificate holds, when the address's host is not it.
	TLS        bool   `json:"tls,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	NBD        string `json:"nbd,omitempty"`
	// Listen is where the secondary takes the primary's link.
	Listen string `json:"listen,omitempty"`
}

// pageHeaders make the page's own origin the only source of script, style
// and data, and keep it out of frames: the page needs nothing else, and
// nothing injected into it (a volume name, an error text) can run or load
// anything.
func pageHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// pageHandler serves index.html at / and the other files under /page/.
func pageHandler() (index, assets http.Handler) {
	sub, err := fs.Sub(pageFiles, "page")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	index = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, sub, "index.html")
	})
	return pageHeaders(index), pageHeaders(http.StripPrefix("/page/", files))
}

func (s *Server) sites(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	sites := s.Sites
	if sites == nil {
		sites = []Site{}
	}
	json.NewEncoder(w).Encode(sites)
}
