#include "scheduler/power/program_power_control.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"

extern char** environ;

namespace joule {

absl::Status RunPowerProgram(const std::string& program, const std::string& node,
                             absl::Duration timeout) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> argv = {const_cast<char*>(program.c_str()),
                             const_cast<char*>(node.c_str()), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", program, ": ", std::strerror(spawned)));
  }
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (true) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("waiting for ", program, ": ", std::strerror(errno)));
    }
    if (absl::Now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(absl::StrCat(
          program, " ", node, " ran longer than ", absl::FormatDuration(timeout), "; killed"));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(
      WIFEXITED(status) ? absl::StrCat(program, " ", node, " exited with ", WEXITSTATUS(status))
                        : absl::StrCat(program, " ", node, " was killed by signal ",
                                       WIFSIGNALED(status) ? WTERMSIG(status) : 0));
}

ProgramPowerControl::ProgramPowerControl(Options options)
    : options_(std::move(options)), thread_([this] { Loop(); }) {}

ProgramPowerControl::~ProgramPowerControl() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void ProgramPowerControl::Suspend(const std::string& node) {
  Enqueue(options_.suspend_program, node);
}

void ProgramPowerControl::Resume(const std::string& node) {
  Enqueue(options_.resume_program, node);
}

void ProgramPowerControl::Enqueue(const std::string& program, const std::string& node) {
  absl::MutexLock lock(&mu_);
  // The latest command for a node wins: a suspend still queued when the
  // node is wanted again must not power it off later.
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                              [&node](const std::pair<std::string, std::string>& queued) {
                                return queued.second == node;
                              }),
               queue_.end());
  queue_.emplace_back(program, node);
}

void ProgramPowerControl::WaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](ProgramPowerControl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
        return self->queue_.empty() && !self->running_;
      },
      this));
}

int ProgramPowerControl::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

void ProgramPowerControl::Loop() {
  while (true) {
    std::pair<std::string, std::string> next;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ProgramPowerControl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (stopping_) return;
      next = std::move(queue_.front());
      queue_.pop_front();
      running_ = true;
    }
    JLOG(INFO) << "running " << next.first << " " << next.second;
    const absl::Status status = RunPowerProgram(next.first, next.second, options_.timeout);
    if (!status.ok()) JLOG(ERROR) << "node power command: " << status;
    absl::MutexLock lock(&mu_);
    running_ = false;
    if (!status.ok()) ++failures_;
  }
}

}  // namespace joule
