package sandbox

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qualfile/qualfile/messages"
)

// ReviewStatus is the review state of a filing.
type ReviewStatus string

// Review states.
const (
	ReviewUnderReview ReviewStatus = "under_review"
	ReviewApproved    ReviewStatus = "approved"
	ReviewRejected    ReviewStatus = "rejected"
)

// AuditStatus is the Douyin audit_status of r, also the VMS ApprovalStatus:
// 1 under review, 2 approved, 3 rejected.
func (r ReviewStatus) AuditStatus() int {
	switch r {
	case ReviewApproved:
		return 2
	case ReviewRejected:
		return 3
	}
	return 1
}

// ReviewByName applies the sandbox's review rule to the names of a filing:
// rejected when one contains "REJECT" (any case) or "驳回", else approved
// when one contains "APPROVE" (any case) or "通过", else under review.
func ReviewByName(names ...string) ReviewStatus {
	for _, n := range names {
		if strings.Contains(strings.ToUpper(n), "REJECT") || strings.Contains(n, "驳回") {
			return ReviewRejected
		}
	}
	for _, n := range names {
		if strings.Contains(strings.ToUpper(n), "APPROVE") || strings.Contains(n, "通过") {
			return ReviewApproved
		}
	}
	return ReviewUnderReview
}

// Qualification is a VMS qualification.
type Qualification struct {
	QualificationNo string       `json:"qualification_no"`
	QualificationID int64        `json:"qualification_id"`
	Entity          string       `json:"entity"`
	CreditCode      string       `json:"unit_social_credit_code,omitempty"`
	Status          ReviewStatus `json:"status"`
	AccessKeyID     string       `json:"access_key_id,omitempty"`
	Updates         int          `json:"updates"`
	CreatedAt       time.Time    `json:"created_at"`
	UpdatedAt       time.Time    `json:"updated_at"`
}

// SignatureIdent is an SMS qualification filed with ApplySignatureIdent.
type SignatureIdent struct {
	ID                      int64        `json:"id"`
	MaterialName            string       `json:"material_name"`
	BusinessCertificateName string       `json:"business_certificate_name"`
	Purpose                 int          `json:"purpose"`
	Status                  ReviewStatus `json:"status"`
	AccessKeyID             string       `json:"access_key_id,omitempty"`
	Edits                   int          `json:"edits"`
	CreatedAt               time.Time    `json:"created_at"`
	UpdatedAt               time.Time    `json:"updated_at"`
}

// DouyinEntity is an entity settled on the Douyin platform.
type DouyinEntity struct {
	EntityID string `json:"entity_id"`
	Approved bool   `json:"approved"`
	// Roles are the industry roles the entity holds (added with add_role).
	Roles []int `json:"roles"`
}

// DouyinRole is a role added with add_role.
type DouyinRole struct {
	TaskID       string       `json:"add_role_taskid"`
	AppID        string       `json:"appid"`
	EntityID     string       `json:"entity_id"`
	IndustryRole int          `json:"industry_role"`
	Status       ReviewStatus `json:"status"`
	AuditStatus  int          `json:"audit_status"`
	CreatedAt    time.Time    `json:"created_at"`
}

// ClassQualification is the online_qualification or audit_qualification of
// a class auth.
type ClassQualification struct {
	AuditStatus    int                       `json:"audit_status"`
	AuditTaskID    string                    `json:"audit_taskid"`
	AuditReason    string                    `json:"audit_reason"`
	ExpireTime     string                    `json:"expire_time"`
	Qualifications []messages.DouyinMaterial `json:"qualifications"`
}

// ClassPartner is the partner block of a class auth.
type ClassPartner struct {
	CompanyType     string                    `json:"company_type"`
	CompanyAddr     string                    `json:"company_addr"`
	CooperationCase []messages.DouyinMaterial `json:"cooperation_case"`
}

// ClassAuth is a category certification (类目认证) of an entity.
type ClassAuth struct {
	MerchantEntityID string                          `json:"merchant_entity_id"`
	PartnerEntityID  string                          `json:"partner_entity_id,omitempty"`
	IndustryCode     int64                           `json:"industry_code"`
	IndustryClass    messages.DouyinIndustryClass    `json:"industry_class"`
	IndustryRole     int                             `json:"industry_role"`
	Online           *ClassQualification             `json:"online_qualification,omitempty"`
	Audit            *ClassQualification             `json:"audit_qualification,omitempty"`
	Institution      *messages.DouyinInstitutionInfo `json:"institution,omitempty"`
	Employee         *messages.DouyinEmployee        `json:"employee,omitempty"`
	Partner          *ClassPartner                   `json:"partner,omitempty"`
}

// State is a snapshot of everything the sandbox holds.
type State struct {
	Qualifications  []Qualification  `json:"vms_qualifications"`
	SignatureIdents []SignatureIdent `json:"sms_signature_idents"`
	Entities        []DouyinEntity   `json:"douyin_entities"`
	Roles           []DouyinRole     `json:"douyin_roles"`
	ClassAuths      []ClassAuth      `json:"douyin_class_auths"`
	// TokenFetches counts the tokens issued per appid.
	TokenFetches map[string]int `json:"token_fetches"`
}

type roleKey struct {
	entity string
	role   int
}

type tokenState struct {
	appid   string
	expires time.Time
}

// world is the mutable state, guarded by Server.mu.
type world struct {
	quals      map[string]*Qualification // by QualificationNo
	qualByID   map[int64]string
	nextQualID int64
	qualSeq    int64

	sms       map[int64]*SignatureIdent
	nextSMSID int64

	entities   map[string][]int       // approved entity → the industry roles it holds
	roles      map[string]*DouyinRole // by task id
	roleByKey  map[roleKey]string
	classAuths []*ClassAuth
	nextRole   int64

	tokens       map[string]*tokenState
	appTokens    map[string][]string
	tokenFetches map[string]int
}

// Seed identifiers; docs/operations.md lists the seed.
const (
	SeedRejectedQualificationNo = "QUA164664762128220429"
	SeedRejectedQualificationID = 1234
	SeedApprovedQualificationNo = "QUA164664762128220430"
	SeedApprovedQualificationID = 1235
	// FirstSMSID is the first id ApplySignatureIdent issues (2^53 + 1); ids
	// are written as JSON integers.
	FirstSMSID int64 = 1<<53 + 1
	// SeedIndustryCode is the industry_code of the seeded class auths and
	// of those add_role files.
	SeedIndustryCode = 10000
)

// SeedEntities are the approved Douyin entities of the seed.
var SeedEntities = []string{
	"E_7230706235463548989",
	"E_7216554566647824422",
	"E_7178703725253394476",
	"E_787907892525941398",
	"I_7179078906694139948",
}

const (
	firstQualID   = 100001
	firstRoleTask = 7179078900000000001
	seedResource  = "certification/resource/e0882488978ce1eb808636028d52b107"
)

var seedTime = time.Date(2022, 3, 7, 10, 7, 1, 0, time.UTC)

func seedWorld() *world {
	w := &world{
		quals:        map[string]*Qualification{},
		qualByID:     map[int64]string{},
		nextQualID:   firstQualID,
		sms:          map[int64]*SignatureIdent{},
		nextSMSID:    FirstSMSID,
		entities:     map[string][]int{},
		roles:        map[string]*DouyinRole{},
		roleByKey:    map[roleKey]string{},
		nextRole:     firstRoleTask,
		tokens:       map[string]*tokenState{},
		appTokens:    map[string][]string{},
		tokenFetches: map[string]int{},
	}
	w.addQual(&Qualification{QualificationNo: SeedRejectedQualificationNo, QualificationID: SeedRejectedQualificationID,
		Entity: "ygcguW", Status: ReviewRejected, CreatedAt: seedTime, UpdatedAt: seedTime})
	w.addQual(&Qualification{QualificationNo: SeedApprovedQualificationNo, QualificationID: SeedApprovedQualificationID,
		Entity: "xYra", Status: ReviewApproved, CreatedAt: seedTime, UpdatedAt: seedTime})
	for _, e := range SeedEntities {
		w.entities[e] = nil
	}
	material := func(typ int64, exp string) messages.DouyinMaterial {
		return messages.DouyinMaterial{MaterialType: typ, MaterialExpiretime: exp, MaterialPaths: []string{seedResource}}
	}
	employee := &messages.DouyinEmployee{
		EmployeeMaterial: &messages.DouyinEmployeeMaterial{Name: "花玲玲", IDNumber: "320XXXXXXXXXXXXXXX", ExpireTime: "2030-05-05",
			FrontPath: seedResource, BackPath: seedResource},
		CooperationAgreement: &messages.DouyinMaterial{MaterialType: 1005, MaterialExpiretime: "2031-06-06", MaterialPaths: []string{seedResource}},
	}
	w.classAuths = []*ClassAuth{
		{
			MerchantEntityID: "E_7230706235463548989",
			IndustryCode:     SeedIndustryCode,
			IndustryClass:    messages.DouyinIndustryClass{FirstClass: 40000, SecondClass: 40600},
			IndustryRole:     messages.DouyinRoleInstitution,
			Online: &ClassQualification{AuditStatus: 2, AuditTaskID: "7230706235463540001", ExpireTime: "2030-04-04",
				Qualifications: []messages.DouyinMaterial{material(1001, "2030-04-04")}},
			Institution: &messages.DouyinInstitutionInfo{RecordName: "三九小飞棍来喽", SceneType: messages.DouyinSceneOnline,
				SubjectType: "企业工商户", LogoURI: seedResource, TrademarkURI: seedResource, Desc: "这个简介也必须是十二个字符才可以吗"},
			Employee: employee,
		},
		{
			MerchantEntityID: "E_787907892525941398",
			IndustryCode:     SeedIndustryCode,
			IndustryClass:    messages.DouyinIndustryClass{FirstClass: 70000, SecondClass: 70500},
			IndustryRole:     messages.DouyinRoleInstitution,
			Online: &ClassQualification{AuditStatus: 1, AuditTaskID: "7879078925259410001", ExpireTime: "2031-12-31",
				Qualifications: []messages.DouyinMaterial{material(1001, "2031-12-31")}},
			Institution: &messages.DouyinInstitutionInfo{RecordName: "沙盒知识学堂", SceneType: messages.DouyinSceneOffline,
				SubjectType: "企业工商户", LogoURI: seedResource, Desc: "沙盒中的线下知识机构简介"},
			Employee: employee,
		},
		{
			MerchantEntityID: "I_7179078906694139948",
			PartnerEntityID:  "E_7178703725253394476",
			IndustryCode:     SeedIndustryCode,
			IndustryClass:    messages.DouyinIndustryClass{FirstClass: 40000, SecondClass: 40600},
			IndustryRole:     messages.DouyinRoleTeacher,
			Online: &ClassQualification{AuditStatus: 2, AuditTaskID: "7179078906694130001", ExpireTime: "2033-03-03",
				Qualifications: []messages.DouyinMaterial{material(1001, "2033-03-03")}},
			Employee: employee,
			Partner: &ClassPartner{CompanyType: "企业工商户", CompanyAddr: "中国山西晋城",
				CooperationCase: []messages.DouyinMaterial{material(1010, "2033-03-03")}},
		},
	}
	return w
}

func (w *world) addQual(q *Qualification) {
	w.quals[q.QualificationNo] = q
	w.qualByID[q.QualificationID] = q.QualificationNo
}

// newQualificationNo returns "QUA" + 13 digits of Unix milliseconds + 5 of
// a sequence, unique in w.
func (w *world) newQualificationNo(now time.Time) string {
	ms := now.UnixMilli() % 1e13
	if ms < 0 {
		ms = -ms
	}
	for {
		w.qualSeq++
		no := fmt.Sprintf("QUA%013d%05d", ms, w.qualSeq%100000)
		if _, taken := w.quals[no]; !taken {
			return no
		}
	}
}

// State returns a snapshot of the sandbox's state, sorted for stable output.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.w
	st := State{
		Qualifications:  sortedCopies(w.quals, func(a, b Qualification) int { return cmp.Compare(a.QualificationID, b.QualificationID) }),
		SignatureIdents: sortedCopies(w.sms, func(a, b SignatureIdent) int { return cmp.Compare(a.ID, b.ID) }),
		Roles:           sortedCopies(w.roles, func(a, b DouyinRole) int { return strings.Compare(a.TaskID, b.TaskID) }),
		TokenFetches:    maps.Clone(w.tokenFetches),
	}
	for id, roles := range w.entities {
		st.Entities = append(st.Entities, DouyinEntity{EntityID: id, Approved: true, Roles: append([]int{}, roles...)})
	}
	slices.SortFunc(st.Entities, func(a, b DouyinEntity) int { return strings.Compare(a.EntityID, b.EntityID) })
	for _, c := range w.classAuths {
		st.ClassAuths = append(st.ClassAuths, c.clone())
	}
	return st
}

// sortedCopies returns copies of the values of m ordered by cmp.
func sortedCopies[K comparable, V any](m map[K]*V, cmp func(a, b V) int) []V {
	var out []V
	for _, v := range m {
		out = append(out, *v)
	}
	slices.SortFunc(out, cmp)
	return out
}

// TokenFetches is the number of access tokens issued for appid.
func (s *Server) TokenFetches(appid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.tokenFetches[appid]
}

// clone returns a deep copy of c, through JSON: c is plain data whose every
// field has a JSON name.
func (c *ClassAuth) clone() (out ClassAuth) {
	b, err := json.Marshal(c)
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		panic("sandbox: copying a class auth: " + err.Error())
	}
	return out
}

// ErrNotFound is returned by SetReview for an id the sandbox does not hold.
var ErrNotFound = errors.New("sandbox: not found")

// rejectReason is the audit_reason of a rejected Douyin filing.
const rejectReason = "资质材料不符合要求(沙盒审核规则)"

// SetReview changes the review status of a filing, as a reviewer at the
// vendor would. id is a VMS QualificationNo, an SMS ident id in decimal, a
// Douyin add_role task id ("Role_…") or a class auth audit_taskid. An
// approved Douyin filing under audit becomes the online qualification.
func (s *Server) SetReview(id string, status ReviewStatus) error {
	if !slices.Contains([]ReviewStatus{ReviewUnderReview, ReviewApproved, ReviewRejected}, status) {
		return fmt.Errorf("sandbox: review status %q is not under_review, approved or rejected", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.w
	now := s.cfg.Now()
	if q, ok := w.quals[id]; ok {
		q.Status = status
		q.UpdatedAt = now
		return nil
	}
	if n, err := strconv.ParseInt(id, 10, 64); err == nil {
		if x, ok := w.sms[n]; ok {
			x.Status = status
			x.UpdatedAt = now
			return nil
		}
	}
	taskID := id
	if r, ok := w.roles[id]; ok {
		r.Status = status
		r.AuditStatus = status.AuditStatus()
		taskID = strings.TrimPrefix(id, "Role_")
		w.reviewClassAuth(taskID, status)
		return nil
	}
	if w.reviewClassAuth(taskID, status) {
		return nil
	}
	return fmt.Errorf("%w: no qualification, SMS ident, role or class auth %q", ErrNotFound, id)
}

// reviewClassAuth sets the status of the class auth qualification whose
// audit_taskid is taskID.
func (w *world) reviewClassAuth(taskID string, status ReviewStatus) bool {
	for _, c := range w.classAuths {
		for _, q := range []*ClassQualification{c.Online, c.Audit} {
			if q == nil || q.AuditTaskID != taskID {
				continue
			}
			q.AuditStatus = status.AuditStatus()
			q.AuditReason = ""
			if status == ReviewRejected {
				q.AuditReason = rejectReason
			}
			if q == c.Audit && status == ReviewApproved {
				c.Online, c.Audit = q, nil
			}
			return true
		}
	}
	return false
}

// submit files q on c: it replaces the online qualification, unless that
// one is approved and q is not, when q waits as the audit qualification.
func (c *ClassAuth) submit(q *ClassQualification) {
	if c.Online != nil && c.Online.AuditStatus == 2 && q.AuditStatus != 2 {
		c.Audit = q
		return
	}
	c.Online, c.Audit = q, nil
}
