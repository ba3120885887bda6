// Signing keys and checkpoint schedules as the ledger and guard bindings take
// them (bindings/evidence.cc).
#ifndef BASTION_BINDINGS_EVIDENCE_H_
#define BASTION_BINDINGS_EVIDENCE_H_

#include <memory>

#include <pybind11/pybind11.h>

#include "bastion/evidence.h"
#include "bastion/ledger.h"

namespace bastion::py_bindings {

void RegisterEvidence(pybind11::module_& m);

// A bastion.SigningKey, or the path (str or os.PathLike) of a key file
// (SigningKey.save, `bastion keys generate`). TypeError for anything else;
// the key file's errors name the file.
std::shared_ptr<const SigningKey> SigningKeyArg(pybind11::handle key, const char* what);

// The keyword arguments signing_key, checkpoint_every (records),
// checkpoint_interval (seconds) and checkpoint_sink (a path the newest note
// is written to, or a callable taking the note text) as a schedule. Without
// a key, the other arguments must keep their defaults (InvalidArgument).
CheckpointSchedule ScheduleArgs(pybind11::handle signing_key, uint64_t every,
                                double interval_seconds, pybind11::handle sink);

// True on a ledger's checkpoint thread while it runs a Python sink. Closing
// the ledger there would join that very thread: a ledger or guard dropped
// there is closed on a thread of its own, and close() is refused.
bool InCheckpointSink();

}  // namespace bastion::py_bindings

#endif  // BASTION_BINDINGS_EVIDENCE_H_
