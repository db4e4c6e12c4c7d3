#include "scheduler/power/node_power_manager.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace joule {

const char* NodePowerStateName(NodePowerManager::State state) {
  switch (state) {
    case NodePowerManager::State::kAwake:
      return "awake";
    case NodePowerManager::State::kSuspending:
      return "suspending";
    case NodePowerManager::State::kSuspended:
      return "suspended";
    case NodePowerManager::State::kResuming:
      return "resuming";
    case NodePowerManager::State::kFailed:
      return "failed";
  }
  return "unknown";
}

void NodePowerManager::Registered(const std::string& node, bool idle, absl::Time now) {
  NodeState& state = nodes_[node];
  state.state = State::kAwake;
  state.idle = idle;
  state.since = now;
}

void NodePowerManager::SetIdle(const std::string& node, bool idle, absl::Time now) {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return;
  NodeState& state = it->second;
  if (state.idle == idle) return;
  state.idle = idle;
  if (state.state == State::kAwake) state.since = now;
}

void NodePowerManager::Hold(const std::string& node, absl::Time now) {
  auto it = nodes_.find(node);
  if (it == nodes_.end() || it->second.state != State::kAwake) return;
  it->second.since = std::max(it->second.since, now);
}

bool NodePowerManager::Disconnected(const std::string& node) {
  auto it = nodes_.find(node);
  if (it == nodes_.end() || it->second.state != State::kSuspending) return false;
  it->second.state = State::kSuspended;
  return true;
}

void NodePowerManager::RestoreSuspended(const std::string& node, absl::Time now) {
  NodeState& state = nodes_[node];
  state.state = State::kSuspended;
  state.idle = true;
  state.since = now;
}

std::vector<std::string> NodePowerManager::ChooseToSuspend(
    absl::Time now, const std::map<std::string, int>& eligible) {
  std::vector<std::string> chosen;
  if (!enabled()) return chosen;
  // Idle GPUs awake now, and the candidates, most idle first.
  int idle_gpus = 0;
  std::vector<std::pair<absl::Time, std::string>> candidates;
  for (const auto& [name, state] : nodes_) {
    auto count = eligible.find(name);
    if (state.state != State::kAwake || !state.idle || count == eligible.end()) continue;
    idle_gpus += count->second;
    if (now - state.since >= options_.suspend_after) candidates.emplace_back(state.since, name);
  }
  std::sort(candidates.begin(), candidates.end());
  for (const auto& [since, name] : candidates) {
    const int node_gpus = eligible.at(name);
    if (idle_gpus - node_gpus < options_.keep_idle_gpus) continue;
    idle_gpus -= node_gpus;
    NodeState& state = nodes_[name];
    state.state = State::kSuspending;
    state.since = now;
    chosen.push_back(name);
  }
  return chosen;
}

bool NodePowerManager::RequestResume(const std::string& node, absl::Time now) {
  auto it = nodes_.find(node);
  if (it == nodes_.end() || it->second.state != State::kSuspended) return false;
  it->second.state = State::kResuming;
  it->second.since = now;
  return true;
}

NodePowerManager::Expired NodePowerManager::Expire(absl::Time now) {
  Expired expired;
  for (auto& [name, state] : nodes_) {
    if (now - state.since < options_.resume_timeout) continue;
    if (state.state == State::kSuspending) {
      state.state = State::kAwake;
      state.since = now;
      expired.suspend_failed.push_back(name);
    } else if (state.state == State::kResuming) {
      state.state = State::kFailed;
      state.since = now;
      expired.resume_failed.push_back(name);
    }
  }
  return expired;
}

NodePowerManager::State NodePowerManager::state(const std::string& node) const {
  auto it = nodes_.find(node);
  return it == nodes_.end() ? State::kAwake : it->second.state;
}

bool NodePowerManager::Asleep(const std::string& node) const {
  const State s = state(node);
  return s == State::kSuspended || s == State::kResuming;
}

std::map<NodePowerManager::State, int> NodePowerManager::Counts() const {
  std::map<State, int> counts;
  for (const auto& [name, state] : nodes_) ++counts[state.state];
  return counts;
}

}  // namespace joule
