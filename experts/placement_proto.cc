#include "experts/placement_proto.h"

#include <algorithm>

namespace dsv3::experts {

void PlacementToProto(const ExpertPlacement& placement, v1::ExpertPlacement* proto) {
  proto->Clear();
  proto->set_version(placement.version);
  proto->set_num_workers(placement.num_workers);
  for (const ExpertPlacement::Layer& l : placement.layers) {
    v1::LayerPlacement* lp = proto->add_layers();
    lp->set_layer(static_cast<int32_t>(l.layer));
    for (const std::vector<int32_t>& r : l.replicas) {
      lp->add_replicas()->mutable_workers()->Add(r.begin(), r.end());
    }
  }
  for (const std::string& a : placement.worker_addresses) proto->add_worker_addresses(a);
}

ExpertPlacement PlacementFromProto(const v1::ExpertPlacement& proto) {
  ExpertPlacement p;
  p.version = proto.version();
  p.num_workers = proto.num_workers();
  for (const v1::LayerPlacement& lp : proto.layers()) {
    ExpertPlacement::Layer l;
    l.layer = lp.layer();
    for (const v1::ExpertReplicas& r : lp.replicas()) {
      l.replicas.emplace_back(r.workers().begin(), r.workers().end());
    }
    p.layers.push_back(std::move(l));
  }
  std::sort(p.layers.begin(), p.layers.end(),
            [](const ExpertPlacement::Layer& a, const ExpertPlacement::Layer& b) {
              return a.layer < b.layer;
            });
  p.worker_addresses.assign(proto.worker_addresses().begin(), proto.worker_addresses().end());
  return p;
}

}  // namespace dsv3::experts
