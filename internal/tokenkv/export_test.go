package tokenkv

// Seal seals a token record of appID as s stores it.
func Seal(s *Store, appID string, record []byte) ([]byte, error) { return s.seal(appID, record) }
