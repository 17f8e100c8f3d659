package console

import (
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// labels are the console's words: Chinese first, as its readers read.
var labels = map[string][2]string{
	"title":                     {"资质报备控制台", "Filing console"},
	"filings":                   {"报备列表", "Filings"},
	"work":                      {"待处理", "Work list"},
	"overview":                  {"概览", "Overview"},
	"signin":                    {"登录", "Sign in"},
	"signout":                   {"退出", "Sign out"},
	"name":                      {"用户名", "Name"},
	"password":                  {"密码", "Password"},
	"signin_failed":             {"用户名或密码错误，或登录链接已失效。", "Wrong name or password, or the sign-in link was used already."},
	"search":                    {"搜索", "Search"},
	"search_hint":               {"请求 ID、备案号、商户名称（开头）", "request id, record number, merchant (start of)"},
	"status":                    {"状态", "Status"},
	"api":                       {"接口", "API"},
	"tenant":                    {"租户", "Tenant"},
	"account":                   {"账号", "Account"},
	"from":                      {"起始日期", "From"},
	"to":                        {"截止日期", "To"},
	"any":                       {"全部", "Any"},
	"all":                       {"全部", "All"},
	"received":                  {"接收时间", "Received"},
	"completed":                 {"完成时间", "Completed"},
	"request_id":                {"请求 ID", "Request id"},
	"merchant":                  {"商户", "Merchant"},
	"record":                    {"备案号", "Record"},
	"attempts":                  {"调用次数", "Attempts"},
	"code":                      {"错误码", "Code"},
	"next_page":                 {"下一页", "Next page"},
	"export_csv":                {"导出 CSV", "Export CSV"},
	"no_filings":                {"没有符合条件的报备。", "No filing matches."},
	"in_progress":               {"处理中", "In progress"},
	"succeeded":                 {"成功", "Succeeded"},
	"ambiguous":                 {"结果不明", "Ambiguous"},
	"failed":                    {"失败", "Failed"},
	"rejected":                  {"已拒绝", "Rejected"},
	"timeline":                  {"时间线", "Timeline"},
	"time":                      {"时间", "Time"},
	"event":                     {"事件", "Event"},
	"class":                     {"类别", "Class"},
	"latency":                   {"耗时", "Latency"},
	"detail":                    {"详情", "Detail"},
	"who_why":                   {"操作人 / 原因", "Who / why"},
	"results":                   {"结果", "Results"},
	"supersedes":                {"取代", "Supersedes"},
	"dead_letters":              {"死信", "Dead letters"},
	"ambiguous_filings":         {"结果不明的报备", "Ambiguous filings"},
	"reason":                    {"原因", "Reason"},
	"deliveries":                {"投递次数", "Deliveries"},
	"trace_id":                  {"追踪 ID", "Trace id"},
	"trace_hint":                {"请求未携带 traceparent 时的追踪 ID", "the trace of a request that carried no traceparent"},
	"export_proof":              {"导出证明", "Export proof"},
	"proof_hint":                {"包含全部存储消息、其流序号与总摘要，可用 publisher verify 校验。", "every stored message, with its stream sequence, and a digest over them all; check it with publisher verify."},
	"replay":                    {"重新投递", "Replay"},
	"remove":                    {"删除死信", "Remove"},
	"resolve":                   {"人工结论", "Resolve"},
	"filed_as":                  {"已备案，备案号", "Filed, as record"},
	"abandon":                   {"放弃", "Abandon"},
	"decision":                  {"结论", "Decision"},
	"confirm":                   {"确认", "Confirm"},
	"cancel":                    {"取消", "Cancel"},
	"confirm_question":          {"请确认以下操作，它将记录在该报备的审计轨迹中：", "Confirm this action; it is recorded in the filing's trail:"},
	"done":                      {"已完成", "Done"},
	"skipped":                   {"未执行", "Skipped"},
	"order_failed":              {"操作未能完成", "The order could not be carried out"},
	"back":                      {"返回", "Back"},
	"payload_redacted":          {"请求内容（已脱敏）", "Payload (redacted)"},
	"body":                      {"消息体", "Body"},
	"masked_for_auditors":       {"审计员看到的个人信息已打码。", "Personal data is masked for auditors."},
	"nothing_to_do":             {"没有待处理事项。", "Nothing to do."},
	"operator_only":             {"仅操作员可执行。", "Operators only."},
	"chart_filings_status":      {"每小时报备量（按状态）", "Filings per hour, by status"},
	"chart_filings_api":         {"每小时报备量（按接口）", "Filings per hour, by API"},
	"chart_latency":             {"供应商平均耗时（毫秒）", "Vendor latency, mean (ms)"},
	"chart_retries":             {"重试与暂缓", "Retries and holds"},
	"retry":                     {"重试", "Retries"},
	"deferred":                  {"暂缓", "Holds"},
	"breakers":                  {"熔断器", "Breakers"},
	"last_48h":                  {"最近 48 小时（UTC 整点）", "The last 48 hours (UTC hours)"},
	"mean_ms":                   {"平均耗时", "Mean"},
	"max_ms":                    {"最长耗时", "Slowest"},
	"ledger_state":              {"台账状态", "Ledger state"},
	"error":                     {"出错了", "Something went wrong"},
	"language":                  {"English", "中文"},
	"role_operator":             {"操作员", "operator"},
	"role_auditor":              {"审计员", "auditor"},
	"total":                     {"合计", "Total"},
	"event_received":            {"已接收", "received"},
	"event_attempt":             {"调用", "attempt"},
	"event_succeeded":           {"成功", "succeeded"},
	"event_failed":              {"失败", "failed"},
	"event_rejected":            {"已拒绝", "rejected"},
	"event_deferred":            {"暂缓", "deferred"},
	"event_ambiguous":           {"结果不明", "ambiguous"},
	"event_dead_letter":         {"进入死信", "dead letter"},
	"event_replayed":            {"重新投递", "replayed"},
	"event_resolved":            {"人工结论", "resolved"},
	"event_reconciled":          {"对账找到", "reconciled"},
	"event_reconciling":         {"对账中", "reconciling"},
	"event_refiled":             {"重新报备", "refiled"},
	"event_settled":             {"结果确定", "settled"},
	"event_duplicate":           {"重复请求", "duplicate"},
	"event_dead_letter_removed": {"死信已删除", "dead letter removed"},
}

// language is the viewer's: ?lang= (remembered in a cookie), else the
// cookie, else Chinese unless the browser asks for English first.
func language(w http.ResponseWriter, r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l == "zh" || l == "en" {
		http.SetCookie(w, &http.Cookie{Name: "qualfile_lang", Value: l, Path: "/", SameSite: http.SameSiteStrictMode, MaxAge: 365 * 24 * 3600})
		return l
	}
	if c, err := r.Cookie("qualfile_lang"); err == nil && (c.Value == "zh" || c.Value == "en") {
		return c.Value
	}
	if strings.HasPrefix(strings.ToLower(r.Header.Get("Accept-Language")), "en") {
		return "en"
	}
	return "zh"
}

// translator looks words up in lang; a key without a label is shown as is.
func translator(lang string) func(string) string {
	i := 0
	if lang == "en" {
		i = 1
	}
	return func(key string) string {
		if l, ok := labels[key]; ok {
			return l[i]
		}
		return key
	}
}

// funcs are the templates' functions; "t" is the page's translator.
var funcs = template.FuncMap{
	"t": translator("zh"),
	// when shows a time in UTC, with a machine-readable copy that the
	// page's script shows in the viewer's zone (UTC stays on hover).
	"when": func(t time.Time) template.HTML {
		if t.IsZero() {
			return ""
		}
		u := t.UTC()
		return template.HTML(`<time datetime="` + u.Format(time.RFC3339Nano) + `" title="` + u.Format("2006-01-02 15:04:05.000") + ` UTC">` +
			u.Format("2006-01-02 15:04:05") + ` UTC</time>`)
	},
	"css": cssClass,
	"ev":  func(e string) string { return "event_" + e },
	"tenantName": func(t string) string {
		if t == "" {
			return "—"
		}
		return t
	},
	"pct": func(v, max float64) float64 { return v / max * 100 },
	"ms":  func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			if k, ok := kv[i].(string); ok {
				m[k] = kv[i+1]
			}
		}
		return m
	},
}
