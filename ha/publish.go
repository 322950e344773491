package ha

import "github.com/hamgr/hamgr/cluster"

// publishProblem adds the discovery problem to plan p: when a publisher
// fails (View.PublishFailed) and the decision found no problem of its
// own, the member reports cluster.ProblemPublishFailed with the
// publisher's reason after the plan's. It changes no action: publishing
// never holds up or undoes a promotion (the agent retries it by itself),
// and any other problem matters more to the operator.
func publishProblem(v View, p Plan) Plan {
	if v.PublishFailed == "" || p.Problem != cluster.ProblemNone {
		return p
	}
	p.Problem = cluster.ProblemPublishFailed
	if p.Reason == "" {
		p.Reason = v.PublishFailed
	} else {
		p.Reason += "; " + v.PublishFailed
	}
	return p
}
