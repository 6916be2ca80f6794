# TLS material may be PEM content or file paths; each attribute falls back to
# an environment variable (HERD_CA_CERT, HERD_CLIENT_CERT, HERD_CLIENT_KEY).
# Create them with `herdctl certs init` and `herdctl certs client NAME --admin`.
provider "herd" {
  ca_cert     = "certs/ca.pem"
  client_cert = "certs/ops.pem"
  client_key  = "certs/ops-key.pem"
}
