#ifndef DSV3_TRANSPORT_EXPERT_DISPATCH_PLACEMENT_PROTO_H_
#define DSV3_TRANSPORT_EXPERT_DISPATCH_PLACEMENT_PROTO_H_

// ExpertPlacement <-> dsv3.v1.ExpertPlacement.

#include "dsv3/v1/expert.pb.h"
#include "transport/expert_dispatch/expert_placement.h"

namespace dsv3::transport {

void PlacementToProto(const ExpertPlacement& placement, v1::ExpertPlacement* proto);
// Structural copy; callers Validate() against their model.
ExpertPlacement PlacementFromProto(const v1::ExpertPlacement& proto);

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_EXPERT_DISPATCH_PLACEMENT_PROTO_H_
