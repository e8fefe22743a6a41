// fp16: IEEE half on the wire (wire.h), round to nearest even; values beyond +-65504 are
// clamped. Linear: the ring sums on the 16-bit wire, at any level of the hierarchy.
#include "comm/codec.h"

namespace ft {

CodecInfo fp16_codec() {
  return {"fp16", "IEEE half, 2 bytes per element", {}, true,
          "rounding with error feedback on the host; the wire conversion on the buffers' device",
          make_element_codec<fp16_wire>};
}

}  // namespace ft
