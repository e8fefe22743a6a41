// Errors and how a job stops.
#pragma once

#include <stdexcept>
#include <string>

namespace ft {

// Something the user can fix (config, data file, launch). Every rank stops with one message
// and exit code 2.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An allocation the device (GPU, or this host's memory) cannot hold: the user fixes it with
// a smaller batch or model, or more ranks.
class OutOfMemory : public UserError {
 public:
  using UserError::UserError;
};

inline constexpr int kExitUserError = 2;
inline constexpr int kExitInternalError = 1;

// Thrown on every rank once a failure has been agreed on and reported; carries the exit code.
class JobStopped : public std::exception {
 public:
  explicit JobStopped(int code) : code_(code) {}
  int code() const { return code_; }
  const char* what() const noexcept override { return "job stopped"; }

 private:
  int code_;
};

}  // namespace ft
