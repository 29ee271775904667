#ifndef DSV3_EXPERTS_PLACEMENT_PROTO_H_
#define DSV3_EXPERTS_PLACEMENT_PROTO_H_

// ExpertPlacement <-> dsv3.v1.ExpertPlacement.

#include "dsv3/v1/expert.pb.h"
#include "experts/expert_placement.h"

namespace dsv3::experts {

void PlacementToProto(const ExpertPlacement& placement, v1::ExpertPlacement* proto);
// Structural copy; callers Validate() against their model.
ExpertPlacement PlacementFromProto(const v1::ExpertPlacement& proto);

}  // namespace dsv3::experts

#endif  // DSV3_EXPERTS_PLACEMENT_PROTO_H_
