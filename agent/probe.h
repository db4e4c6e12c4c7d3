#ifndef JOULE_AGENT_PROBE_H_
#define JOULE_AGENT_PROBE_H_

#include <ostream>

#include "absl/time/time.h"
#include "agent/hardware.h"
#include "common/clock.h"

namespace joule {

// `joule-agent --probe`: prints the discovered sources and devices and
// `samples` readings `interval` apart, and changes nothing (no cap, no file
// under the work directory, no scheduler connection). Returns the exit code:
// 0 when at least one power source could be read.
int RunProbe(Hardware& hardware, const Clock& clock, int samples,
             absl::Duration interval, std::ostream& out);

}  // namespace joule

#endif  // JOULE_AGENT_PROBE_H_
