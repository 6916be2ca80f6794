package herdv1

// agentd attaches a google.rpc.ErrorInfo of ErrorDomain to the errors a
// client has to tell apart beyond their gRPC code; its Reason is one of
// the Reason constants. Clients match on these, never on message text.
const ErrorDomain = "herd.v1"

const (
	// ReasonSecretNotAvailable (FailedPrecondition): a pod uses a secret
	// its node does not hold, or whose data does not fit the pod (a key it
	// names is missing, a pull secret is no registry secret for the
	// image's host).
	ReasonSecretNotAvailable = "SECRET_NOT_AVAILABLE"
)

const (
	// ReasonUnplaceable (FailedPrecondition): a deployment's replica fits
	// on no node; the message reports why for each node.
	ReasonUnplaceable = "UNPLACEABLE"
	// ReasonInsufficientResources (FailedPrecondition): a pod's requests
	// exceed what its node has free; the message gives the numbers.
	ReasonInsufficientResources = "INSUFFICIENT_RESOURCES"
)
