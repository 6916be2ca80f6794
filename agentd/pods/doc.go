// Package pods is agentd's pod manager: the kubelet of a herd node. It
// records desired state in the store, runs every pod's containers through
// the runtime (one supervising goroutine per pod), restarts them with
// back-off according to the restart policy, keeps their status (persisted,
// so it survives agentd restarts), re-adopts running containers after a
// restart, serves their logs, and garbage-collects what no pod owns any
// more — never anything without herd's safety marker.
//
// # Semantics
//
//   - Apply validates and defaults the spec (spec.ValidatePod,
//     spec.Defaulted) and is idempotent on the hash of the defaulted spec:
//     the same spec again returns the existing pod (created=false), another
//     spec under the same name is ErrConflict. Pods are never patched.
//   - Container IDs are runtime.ContainerID(pod, container)
//     ("herd-<pod>-<container>"); two pods whose containers would share an
//     ID are refused (ErrConflict), and so is a pod whose container or
//     snapshot ID is taken by an object without the marker (ErrForeign).
//   - Containers of a pod start in parallel. A restart gets a fresh
//     container and root filesystem (as in Kubernetes); restarts append to
//     the same log file.
//   - Restart policies Always, OnFailure, Never. Back-off like the kubelet
//     (package restarts): the first restart is immediate, then BackoffBase,
//     doubling up to BackoffMax, each delay lengthened by a random jitter of
//     under 10 %, counted per container over consecutive crashes and reset
//     once a run lasted 10 minutes. During back-off a container is waiting
//     with reason CrashLoopBackOff and next_restart_at. A task that cannot
//     be created or started (bad command) is RunContainerError and retried
//     the same way, except under Never, where it ends as StartError.
//   - Image pulls are retried with the same exponential back-off
//     (ErrImagePull on the first failure, then ImagePullBackOff), whatever
//     the restart policy.
//   - Container states: waiting (ContainerCreating, ErrImagePull,
//     ImagePullBackOff, CrashLoopBackOff, CreateContainerError,
//     RunContainerError), running, terminated (Completed, Error, OOMKilled,
//     ContainerLost, StartError). terminated means "for good"; a container
//     about to restart is never terminated.
//   - Pod phase: Pending while some container never started; Running once
//     all started and at least one runs or will restart; Succeeded when all
//     terminated with 0; Failed when all terminated and one failed.
//   - Delete: SIGTERM to every container, SIGKILL after the grace period,
//     then tasks, containers, snapshots, logs and finally the record go.
//     The pod's worker is stopped first, so nothing restarts or is recorded
//     behind the delete. A delete interrupted by an agentd restart is not
//     resumed: the pod comes back and the client's retry deletes it.
//   - After an agentd restart (Start): running tasks are re-adopted (same
//     process, same restart count), tasks that exited meanwhile are handled
//     by the restart policy with their real exit code, containers that
//     vanished are ContainerLost (and restarted unless Never). The
//     back-off streak is estimated from the restart count.
//   - Status is published (Get, List, WaitFor) the moment it changes and
//     persisted right after.
//   - Garbage collection (at Start, then every GCInterval): marked
//     containers and snapshots with pod labels naming a pod incarnation
//     (name and uid) the manager deleted or replaced (a tombstone in the
//     store, written before anything of it is removed) and does not run,
//     and its log directory, secret tmpfs and network (gc.go,
//     tombstone.go). An incarnation without a tombstone is never
//     collected: the store may have been lost. Every container carries a
//     copy of its pod's record (ExtensionPodRecord), from which Start
//     re-adopts pods the store does not know (readopt.go).
//   - Secrets (secrets.go, secretfs.go): Apply refuses a pod whose
//     secrets the node's SecretSource cannot give it (ErrSecretUnavailable,
//     at the field path), before anything is created. secret_mounts are
//     files on a tmpfs per pod incarnation (SecretsDir/<pod>_<uid>),
//     bind-mounted read-only into the containers and rewritten atomically
//     by SecretChanged; secret_env is resolved when a container is created;
//     image_pull_secret gives the pulls of the pod's images credentials for
//     its registry host. Each container records the checksums it was
//     created with (LabelSecrets), and RestartForSecret recreates, one pod
//     at a time, the containers of pods with restart_on_secret_change
//     whose checksum is stale. agentd must share its mount namespace with
//     containerd: the bind mounts' source is agentd's tmpfs. The tmpfs is
//     unmounted when the pod is deleted, and garbage-collected (marked
//     ones only) when its pod incarnation is gone.
//   - Requests and QoS (admission.go): Apply refuses a new pod whose
//     effective requests (a container's request, else its limit) exceed
//     Config.Allocatable less the requests of every other pod, terminating
//     ones included (ErrInsufficientResources, with the numbers); the
//     check and the insertion happen under applyMu, so two pods cannot
//     both take the last room. Stored pods are never refused at Start.
//     Each container's processes get the kubelet's oom_score_adj for the
//     pod's QoS class (no lower than agentd itself may set), reported in
//     the status with the classes.
//
// Logs: see logs.go.
package pods
