// The shape of a GPT-2-style model; the config's model section is this struct.
#pragma once

namespace ft {

struct GptShape {
  int vocab = 256;
  int context = 128;
  int layers = 4;
  int heads = 4;
  int width = 128;
  int hidden() const { return 4 * width; }
};

}  // namespace ft
