package mirror

import "net/http"

// ViaGateway makes a handler from New serve `POST /credit/sessions/get` through
// grpc-gateway, as before the hand-written route, for tests that compare the two.
func ViaGateway(h http.Handler) { h.(*handler).viaGateway = true }
