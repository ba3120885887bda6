// BudgetSetBackend: the BudgetBackend of an in-process BudgetSet.
#include "bastion/budget_backend.h"

namespace bastion {

namespace {

class SetBackend final : public BudgetBackend {
 public:
  explicit SetBackend(std::shared_ptr<BudgetSet> budgets) : budgets_(std::move(budgets)) {}

  Result<BudgetHold> Reserve(const BudgetSubject& subject, int64_t estimate_nanousd,
                             std::string* refused_by) override {
    return budgets_->Reserve(subject, estimate_nanousd, refused_by);
  }
  Result<HoldSettlement> Settle(const BudgetHold& hold, int64_t actual_nanousd) override {
    return budgets_->Settle(hold, actual_nanousd);
  }
  Status Release(const BudgetHold& hold) override { return budgets_->Release(hold); }
  std::vector<std::string> CoveringBudgets(const BudgetSubject& subject) const override {
    return budgets_->CoveringBudgets(subject);
  }

 private:
  std::shared_ptr<BudgetSet> budgets_;
};

}  // namespace

std::shared_ptr<BudgetBackend> BudgetSetBackend(std::shared_ptr<BudgetSet> budgets) {
  return std::make_shared<SetBackend>(std::move(budgets));
}

}  // namespace bastion
