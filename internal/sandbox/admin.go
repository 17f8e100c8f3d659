package sandbox

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/qualfile/qualfile/messages"
)

// maxAdminBody bounds the body of an admin request.
const maxAdminBody = 1 << 20

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sandbox/calls", s.adminCalls)
	mux.HandleFunc("GET /_sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("POST /_sandbox/faults", s.adminInject)
	mux.HandleFunc("DELETE /_sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /_sandbox/faults/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || !s.RemoveFault(id) {
			adminError(w, http.StatusNotFound, "no active fault "+strconv.Quote(r.PathValue("id")))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sandbox/reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_sandbox/state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.State())
	})
	mux.HandleFunc("POST /_sandbox/review", s.adminReview)
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// adminCalls lists the recorded calls, optionally only those of ?api=.
func (s *Server) adminCalls(w http.ResponseWriter, r *http.Request) {
	calls := s.Calls()
	if api := messages.API(r.URL.Query().Get("api")); api != "" {
		calls = slices.DeleteFunc(calls, func(c Call) bool { return c.API != api })
	}
	writeJSON(w, http.StatusOK, calls)
}

func readAdminJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		adminError(w, http.StatusRequestEntityTooLarge, err.Error())
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// adminInject injects the Fault in the body and answers {"id": N}.
func (s *Server) adminInject(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if !readAdminJSON(w, r, &f) {
		return
	}
	if err := f.Validate(); err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]int{"id": s.Inject(f)})
}

// adminReview sets a review status: {"id": "...", "status": "approved"}.
func (s *Server) adminReview(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID     string       `json:"id"`
		Status ReviewStatus `json:"status"`
	}
	if !readAdminJSON(w, r, &req) {
		return
	}
	if err := s.SetReview(req.ID, req.Status); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, ErrNotFound) {
			status = http.StatusNotFound
		}
		adminError(w, status, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
